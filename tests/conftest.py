import os
import sys

# Tests import the top-level modules (model, sampler, verifier, arm, train) directly.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

# The tests' models are tiny: one thread is faster than several and immune to a busy machine.
torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random tiny model (Hugging Face folder) and a JSONL of 24 plain problems, once per test module."""
    from train_helpers import plain_data, tiny_model_dir

    d = tmp_path_factory.mktemp("tiny")
    return tiny_model_dir(d / "model"), plain_data(d / "data.jsonl")


@pytest.fixture
def mixed_rewards(monkeypatch):
    """A random model never writes a right answer: reward responses of even character length instead,
    so every stage carries a real signal (the verifier has its own tests)."""
    import verifier

    monkeypatch.setattr(verifier, "verify", lambda response, gold: len(response) % 2 == 0)
