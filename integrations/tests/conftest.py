import os
import sys

# The integration tests import integrations/*.py (trl_arm, verl_arm) and the repo root's arm.py directly.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # integrations/
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repo root

import torch

# The tests' models are tiny: one thread is faster than several and immune to a busy machine.
torch.set_num_threads(1)
