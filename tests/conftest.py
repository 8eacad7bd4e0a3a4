import os
import sys

# Tests import the top-level modules (model, sampler, verifier, arm, train) directly.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
