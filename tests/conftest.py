import os
import sys

# Tests import the top-level modules (model, sampler, verifier, arm, train) directly.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

# The tests' models are tiny: one thread is faster than several and immune to a busy machine.
torch.set_num_threads(1)
