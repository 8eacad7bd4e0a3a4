"""The mechanism itself, on PAPER.md's exact softmax "bandit" (claim 5). No sampling: exact.

The policy is a softmax over six whole responses, pi(o) ~ exp(z_o). Responses 0-3 are correct,
with unequal initial probabilities 0.4, 0.2, 0.1, 0.05; responses 4 and 5 are wrong (0.125 each).
Every step, the group is the six responses, each once; arm.py gives each its advantage (GRPO's,
or ARM's with answer confidence c(o|q) = pi(o)), and the logits take one step of the *exact*
expected policy gradient of J = sum_o pi(o) A(o) with A held fixed:

    dJ/dz_o = pi(o) (A(o) - sum_o' pi(o') A(o'))            (PAPER.md, "The problem it fixes")

GRPO gives the four correct responses the same advantage, so the gap between two of them grows
in proportion to pi_a - pi_b: the most likely one runs away (rich get richer). ARM lowers the
advantage of the more likely one, and the correct responses end up equally likely.
"""
import math

import pytest
import torch

import arm

P0 = torch.tensor([0.4, 0.2, 0.1, 0.05, 0.125, 0.125], dtype=torch.float64)
REWARDS = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 0.0]])  # (1 prompt, G = 6)
CORRECT = REWARDS[0] > 0
STEPS, LR = 300, 1.0


def train_bandit(alpha: float) -> dict[str, list[float]]:
    """Run STEPS exact policy-gradient steps; return per-step summaries of pi before each step."""
    z = P0.log().clone()  # logits
    ratio, entropy, p_wrong = [], [], []
    for _ in range(STEPS):
        pi = z.softmax(0)  # (6,)
        c_o = pi.float()[None]  # answer confidence of each response = its probability
        c_q = torch.tensor([0.5])  # any constant: it shifts the group uniformly and cancels below
        A = arm.arm_advantages(REWARDS, c_q, c_o, alpha=alpha)[0].double()  # alpha = 0: exactly GRPO
        z = z + LR * pi * (A - (pi * A).sum())  # the exact expected policy gradient
        good = pi[CORRECT]
        q = good / good.sum()  # the policy restricted to the correct responses
        ratio.append((good.max() / good.min()).item())
        entropy.append(-(q * q.log()).sum().item())
        p_wrong.append(pi[~CORRECT].sum().item())
    return {"ratio": ratio, "entropy": entropy, "p_wrong": p_wrong}


def test_grpo_rich_get_richer_arm_stays_balanced():
    grpo, armed = train_bandit(alpha=0.0), train_bandit(alpha=1.0)
    start = grpo["ratio"][0]
    assert start == armed["ratio"][0] == pytest.approx(8.0)  # 0.4 / 0.05

    # GRPO: the max/min ratio of the correct responses grows at every step, far past its start,
    # and is still growing at the end (no fixed point: it grows without bound)
    g = grpo["ratio"]
    assert all(later > earlier for earlier, later in zip(g, g[1:]))
    assert g[-1] > 25 * start
    assert g[-1] > 1.1 * g[-50]

    # ARM: the ratio may rise a little at first, but stays bounded and returns to 1 (all equal)
    a = armed["ratio"]
    assert max(a) < 2 * start
    assert a[-1] < 1.01

    # entropy over the correct responses: GRPO's collapses, ARM's reaches its maximum log 4
    assert grpo["entropy"][-1] < 0.5 * grpo["entropy"][0]
    assert armed["entropy"][-1] > math.log(4) - 1e-3

    # both still learn the task: the wrong responses' probability falls from 0.25 to ~0
    assert grpo["p_wrong"][-1] < 0.01 and armed["p_wrong"][-1] < 0.01
