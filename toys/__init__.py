"""The built-in toys: their tasks (tasks.py, hidden_type.py), their builder (build.py) and the shipped models (one folder each)."""
