"""The mechanism itself, on METHOD.md's exact softmax "bandit" (claim 5). No sampling: exact.

The policy is a softmax over six whole responses, pi(o) ~ exp(z_o). Responses 0-3 are correct,
with unequal initial probabilities 0.4, 0.2, 0.1, 0.05; responses 4 and 5 are wrong (0.125 each).
Every step, the group is the six responses, each once; arm.py gives each its advantage (GRPO's,
or ARM's with answer confidence c(o|q) = pi(o)), and the logits take one step of the *exact*
expected policy gradient of J = sum_o pi(o) A(o) with A held fixed:

    dJ/dz_o = pi(o) (A(o) - sum_o' pi(o') A(o'))            (METHOD.md, "What goes wrong in GRPO")

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


def train_bandit(alpha: float, **variant) -> dict[str, list[float]]:
    """Run STEPS exact policy-gradient steps; return per-step summaries of pi before each step.
    variant: arm_advantages' shift_rows / shift_center (the paper's formula by default)."""
    z = P0.log().clone()  # logits
    ratio, entropy, p_wrong = [], [], []
    for _ in range(STEPS):
        pi = z.softmax(0)  # (6,)
        c_o = pi.float()[None]  # answer confidence of each response = its probability
        c_q = torch.tensor([0.5])  # any constant: it shifts the group uniformly and cancels below
        A = arm.arm_advantages(REWARDS, c_q, c_o, alpha=alpha, **variant)[0].double()  # alpha = 0: exactly GRPO
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


# ARM's two parts taken apart (arm.py's shift_rows / shift_center; our ablations, not the paper's)
VARIANTS = [dict(shift_rows=r, shift_center=c) for r in arm.SHIFT_ROWS for c in arm.SHIFT_CENTER]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: f"{v['shift_rows']}-{v['shift_center']}")
def test_every_variant_stops_the_rich_get_richer_drift(variant):
    """The re-weighting among correct answers is what balances them: every variant has it. In this
    exact bandit a shift common to the whole group cancels against the policy-weighted mean, so the
    two "group" variants run identically; "correct" changes the path, not the end point."""
    grpo, armed = train_bandit(alpha=0.0, **variant), train_bandit(alpha=1.0, **variant)
    assert grpo["ratio"] == train_bandit(alpha=0.0)["ratio"]  # alpha = 0 is GRPO whatever the variant
    a = armed["ratio"]
    assert max(a) < 2 * a[0] and a[-1] < 1.01
    assert armed["entropy"][-1] > math.log(4) - 1e-3
    assert armed["p_wrong"][-1] < 0.01


# The offset. Confidences fixed at the first toy's measured means (research/README.md, original): a correct confident answer
# c(o|q) = 0.80, a wrong answer 0.55, a wrong unsure guess 0.08, c(q) = 0.43; one prompt, G = 3.
OFFSET_P0 = torch.tensor([0.5, 0.4, 0.1], dtype=torch.float64)
OFFSET_REWARDS = torch.tensor([[1.0, 0.0, 0.0]])
OFFSET_C_O, OFFSET_C_Q = torch.tensor([[0.80, 0.55, 0.08]]), torch.tensor([0.43])


def train_offset_bandit(alpha: float, **variant) -> tuple[torch.Tensor, list[float]]:
    z = OFFSET_P0.log().clone()
    A = arm.arm_advantages(OFFSET_REWARDS, OFFSET_C_Q, OFFSET_C_O, alpha=alpha, **variant)[0].double()
    for _ in range(STEPS):
        pi = z.softmax(0)
        z = z + LR * pi * (A - (pi * A).sum())
    return A, z.softmax(0).tolist()


def test_the_paper_form_pays_an_unsure_wrong_guess_the_correct_only_form_does_not():
    # alpha = 3 (the first toy's failing sweep point): the paper's formula gives the wrong unsure guess
    # (r = 0, c = 0.08) a larger advantage than the correct answer: -0.71 + 3 (0.43 - 0.08) = +0.34 > 0.30
    A, pi = train_offset_bandit(3.0)
    assert A[2] > A[0] > 0 > A[1]
    # so the policy keeps paying for it: it settles at ~2 % instead of vanishing
    assert pi[2] > 0.01
    # correct-only: wrong answers keep GRPO's -0.71 and the guess dies out; the correct answer takes ~all
    A_c, pi_c = train_offset_bandit(3.0, shift_rows="correct")
    assert A_c[1] == A_c[2] < 0 < A_c[0]
    assert pi_c[2] < 0.1 * pi[2] and pi_c[0] > 0.99
    # at alpha = 1 the paper's form still ranks every correct answer above every wrong one
    A_1, pi_1 = train_offset_bandit(1.0)
    assert A_1[0] > max(A_1[1], A_1[2]) and pi_1[0] > 0.99
