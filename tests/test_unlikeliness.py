"""The unlikeliness reward (arm.unlikeliness_advantages), the baseline written beside ARM."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import arm


def test_group_of_four_by_hand():
    # rewards 1, 1, 0, 1; likelihoods rank them: row 1 least likely (rank 0), row 3 (1), row 0 (2), row 2 (3)
    r = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    lp = torch.tensor([[-0.5, -2.0, -0.1, -1.0]])
    beta = 0.5
    shaped = [1 * (1 - 0.5 * 2 / 4), 1 * (1 - 0.5 * 0 / 4), 0.0, 1 * (1 - 0.5 * 1 / 4)]  # 0.75, 1, 0, 0.875
    mean = sum(shaped) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in shaped) / 4)
    want = torch.tensor([[(x - mean) / (std + 1e-6) for x in shaped]])
    got = arm.unlikeliness_advantages(r, lp, beta=beta)
    assert torch.allclose(got, want, atol=1e-6)
    assert got[0, 1] > got[0, 3] > got[0, 0] > got[0, 2]  # the least likely correct answer gets the most


def test_ties_rank_by_row_order():
    r = torch.ones(1, 3)
    got = arm.unlikeliness_advantages(r, torch.zeros(1, 3), beta=0.3)  # ranks 0, 1, 2 in row order
    assert got[0, 0] > got[0, 1] > got[0, 2]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 1), min_size=1, max_size=8), st.sampled_from(["std", "none"]), st.integers(0, 10 ** 6))
def test_beta_zero_is_grpo_bit_for_bit(rewards, scale, seed):
    r = torch.tensor([rewards], dtype=torch.float32)
    lp = -torch.rand(r.shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(arm.unlikeliness_advantages(r, lp, beta=0.0, scale=scale), arm.grpo_advantages(r, scale=scale))


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 8), st.floats(0.05, 1.0), st.integers(0, 10 ** 6))
def test_all_wrong_groups_get_zero_and_wrong_answers_share_one_advantage(G, beta, seed):
    g = torch.Generator().manual_seed(seed)
    lp = -torch.rand(2, G, generator=g)
    r = torch.zeros(2, G)
    r[1, 0] = 1.0  # second group: one correct answer
    A = arm.unlikeliness_advantages(r, lp, beta=beta)
    assert torch.equal(A[0], torch.zeros(G))
    assert torch.allclose(A[1, 1:], A[1, 1:2].expand(G - 1))  # wrong answers stay at r = 0: one value
    assert A[1, 0] > 0


def test_permuting_a_group_permutes_its_advantages():
    r = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.0]])
    lp = torch.tensor([[-0.3, -1.0, -0.9, -0.1, -0.2]])
    perm = torch.tensor([4, 2, 0, 1, 3])
    A = arm.unlikeliness_advantages(r, lp, beta=0.25)
    assert torch.allclose(arm.unlikeliness_advantages(r[:, perm], lp[:, perm], beta=0.25), A[:, perm])


def test_errors_are_one_line():
    with pytest.raises(ValueError, match="beta must be in"):
        arm.unlikeliness_advantages(torch.ones(1, 2), torch.zeros(1, 2), beta=1.5)
    with pytest.raises(ValueError, match="must both be"):
        arm.unlikeliness_advantages(torch.ones(1, 2), torch.zeros(1, 3), beta=0.1)


def test_a_whole_run_with_zero_rank_penalty_is_grpo_and_with_one_it_differs(tiny, tmp_path, mixed_rewards):
    from safetensors.torch import load_file

    import train

    model, data = tiny
    base = ["--model", str(model), "--data", str(data), "--prompts-per-step", "3", "--group-size", "4",
            "--max-new-tokens", "8", "--eval-prompts", "2", "--eval-n", "4", "--lr", "3e-3", "--threads", "1",
            "--steps", "2", "--no-eval-before"]
    w = {}
    for name, extra in [("grpo", ["--algo", "grpo"]), ("u0", ["--algo", "unlikely", "--rank-penalty", "0"]),
                        ("u1", ["--algo", "unlikely", "--rank-penalty", "1"])]:
        assert train.main(base + ["--out", str(tmp_path / name)] + extra) == 0
        w[name] = load_file(str(tmp_path / name / "policy" / "model.safetensors"))
    assert all(torch.equal(w["grpo"][k], w["u0"][k]) for k in w["grpo"])
    assert not all(torch.equal(w["grpo"][k], w["u1"][k]) for k in w["grpo"])
    assert train.main(base + ["--out", str(tmp_path / "bad"), "--algo", "unlikely", "--alpha", "1"]) != 0


def test_mean_logprob_counts_only_the_response_tokens():
    lp = torch.tensor([[-1.0, -3.0, -9.0], [-2.0, -9.0, -9.0], [-9.0, -9.0, -9.0]])
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    assert arm.mean_logprob(lp, mask).tolist() == [-2.0, -2.0, 0.0]  # an empty response: 0, not a NaN
