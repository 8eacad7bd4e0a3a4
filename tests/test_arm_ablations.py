"""arm.py's options that are not the paper's, and its argument checks.

- Our ablations of definition 4 (METHOD.md, "Our ablations"): all_correct="grpo",
  shift_rows="correct", shift_center="correct-mean", and their four combinations.
- Baselines and options of definitions 1 and 5: Dr.GRPO's scale="none", the loss aggregations
  other than the paper's token mean (the original GRPO's seq-mean-token-mean, Dr.GRPO's constant),
  and the KL term to a reference model.
- Errors a user can cause: one line naming the argument.

The paper's math, with its settings, is in test_arm.py; the unlikeliness baseline in
test_unlikeliness.py."""
import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import arm
from test_arm import FEW, check_analytic_gradient, groups, loss_inputs, reference_token_losses

VARIANTS = list(itertools.product(arm.SHIFT_ROWS, arm.SHIFT_CENTER))  # ("group", "prompt") is the paper


# ---------------------------------------------------------------- definition 1 without the std: Dr.GRPO

def test_dr_grpo_scale_none_by_hand():
    # Dr.GRPO's scale="none" is just r - mean
    r = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert torch.equal(arm.grpo_advantages(r, scale="none"), torch.tensor([[0.5, -0.5, 0.5, -0.5]]))


# ---------------------------------------------------------------- all_correct="grpo": all-correct groups keep A = 0

def test_all_correct_option():
    r = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    c_q, c_o = torch.tensor([0.5, 0.5]), torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]])
    a_arm = arm.arm_advantages(r, c_q, c_o, alpha=1.0)
    a_grpo = arm.arm_advantages(r, c_q, c_o, alpha=1.0, all_correct="grpo")
    assert torch.equal(a_grpo[0], torch.zeros(3))  # the variant: all-correct groups stay at 0
    assert torch.equal(a_arm[1], a_grpo[1])  # mixed groups: identical


def test_all_correct_grpo_leaves_a_group_of_one_at_zero():
    # a correct single response is an all-correct group (test_arm.test_group_of_one)
    r = torch.tensor([[1.0], [0.0]])
    c_q, c_o = torch.tensor([0.5, 0.5]), torch.tensor([[0.9], [0.9]])
    assert torch.equal(arm.arm_advantages(r, c_q, c_o, alpha=1.0, all_correct="grpo"), torch.zeros(2, 1))


# ---------------------------------------------------------------- shift_rows / shift_center: ARM's two parts taken apart

def test_variants_by_hand():
    # the group of test_arm.test_group_of_four_by_hand: rewards 1, 0, 1, 0, c(o|q) = 0.8, 0.3, 0.2, 0.6, c(q) = 0.5
    r, c_q, c_o = torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([0.5]), torch.tensor([[0.8, 0.3, 0.2, 0.6]])
    a = 0.5 / 0.500001
    A = torch.tensor([[a, -a, a, -a]])
    shift = lambda center: 0.5 * (center - c_o)  # alpha 0.5
    cbar = (0.8 + 0.2) / 2  # mean c(o|q) of the correct ones
    cases = {
        ("group", "prompt"): A + shift(0.5),  # the paper: everyone in the group
        ("correct", "prompt"): A + shift(0.5) * torch.tensor([[1.0, 0, 1, 0]]),  # wrong ones keep A
        ("group", "correct-mean"): A + shift(cbar),
        ("correct", "correct-mean"): A + torch.tensor([[0.5 * (cbar - 0.8), 0, 0.5 * (cbar - 0.2), 0]]),
    }
    for (rows, center), expected in cases.items():
        out = arm.arm_advantages(r, c_q, c_o, alpha=0.5, shift_rows=rows, shift_center=center)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6, msg=f"{rows}, {center}")
    # the defaults are the paper's formula
    assert torch.equal(arm.arm_advantages(r, c_q, c_o, alpha=0.5),
                       arm.arm_advantages(r, c_q, c_o, alpha=0.5, shift_rows="group", shift_center="prompt"))


@FEW
@given(groups(), st.sampled_from(["std", "none"]), st.sampled_from(["arm", "grpo"]), st.sampled_from(VARIANTS))
def test_alpha_zero_is_grpo_bit_for_bit_in_every_variant(g, scale, all_correct, variant):
    r, c_q, c_o, _ = g
    out = arm.arm_advantages(r, c_q, c_o, alpha=0.0, scale=scale, all_correct=all_correct,
                             shift_rows=variant[0], shift_center=variant[1])
    assert torch.equal(out, arm.grpo_advantages(r, scale=scale))


@FEW
@given(groups(), st.sampled_from(["std", "none"]))
def test_centred_correct_only_shift_sums_to_zero_over_the_correct_answers(g, scale):
    r, c_q, c_o, alpha = g
    out = arm.arm_advantages(r, None, c_o, alpha=alpha, scale=scale, shift_rows="correct", shift_center="correct-mean")
    base = arm.grpo_advantages(r, scale=scale)
    shift = out - base
    correct = r > 0
    assert (shift[~correct] == 0).all()  # wrong answers keep GRPO's advantage exactly
    torch.testing.assert_close(shift.sum(1), torch.zeros(r.shape[0]), rtol=0, atol=1e-5 * (1 + alpha))
    torch.testing.assert_close(out.sum(1), base.sum(1), rtol=0, atol=1e-5 * (1 + alpha))  # GRPO's group total


@FEW
@given(groups(), st.sampled_from(VARIANTS))
def test_every_variant_leaves_groups_without_a_correct_answer_alone(g, variant):
    r, c_q, c_o, alpha = g
    out = arm.arm_advantages(r, c_q, c_o, alpha=alpha, shift_rows=variant[0], shift_center=variant[1])
    none_correct = (r == 0).all(dim=1)
    assert torch.equal(out[none_correct], arm.grpo_advantages(r)[none_correct])


@FEW
@given(groups(), st.sampled_from(VARIANTS))
def test_every_variant_lowers_the_more_confident_correct_answer(g, variant):
    r, c_q, c_o, alpha = g
    out = arm.arm_advantages(r, c_q, c_o, alpha=alpha, shift_rows=variant[0], shift_center=variant[1])
    for p in range(r.shape[0]):
        for i, j in itertools.permutations(range(r.shape[1]), 2):
            if r[p, i] > 0 and r[p, j] > 0 and c_o[p, i] >= c_o[p, j]:
                assert out[p, i] <= out[p, j] + 1e-6


def test_correct_only_wrong_answers_keep_grpo_and_correct_mean_ignores_c_q():
    r = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    c_o = torch.tensor([[0.9, 0.05, 0.5], [0.7, 0.3, 0.1]])
    base = arm.grpo_advantages(r)
    out = arm.arm_advantages(r, torch.tensor([0.4, 0.4]), c_o, alpha=2.0, shift_rows="correct")
    assert torch.equal(out[r == 0], base[r == 0])
    # the paper's form pays the unlikely wrong answer (c = 0.05): 2 * (0.4 - 0.05) = +0.7 on top of A
    paper = arm.arm_advantages(r, torch.tensor([0.4, 0.4]), c_o, alpha=2.0)
    torch.testing.assert_close(paper[0, 1] - base[0, 1], torch.tensor(0.7))
    a = arm.arm_advantages(r, torch.tensor([0.4, 0.4]), c_o, alpha=2.0, shift_center="correct-mean")
    b = arm.arm_advantages(r, torch.tensor([0.9, 0.1]), c_o, alpha=2.0, shift_center="correct-mean")
    assert torch.equal(a, b)


# ---------------------------------------------------------------- definition 5's options: other aggregations, KL

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_other_aggregations_match_their_formulas(seed):
    lp, old, ref, adv, mask = loss_inputs(seed)
    B, T = mask.shape
    l_t = reference_token_losses(lp, old, ref, adv, mask, 0.2, 0.28, 0.05)
    n = mask.sum(1)
    expected = {
        "seq-mean-token-mean": (l_t.sum(1) / n).mean(),  # original GRPO
        "constant": l_t.sum() / (B * 16),  # Dr.GRPO
    }
    for agg, value in expected.items():
        loss, _ = arm.policy_loss(lp, old, adv, mask, agg=agg, ref_logprobs=ref, kl_coef=0.05, max_len=16)
        torch.testing.assert_close(loss, value)
    loss, _ = arm.policy_loss(lp, old, adv, mask, agg="constant", ref_logprobs=ref, kl_coef=0.05)
    torch.testing.assert_close(loss, l_t.sum() / (B * T))  # max_len defaults to the mask's width


@pytest.mark.parametrize("agg", ["seq-mean-token-mean", "constant"])
def test_gradient_of_other_aggregations_equals_the_analytic_gradient(agg):
    check_analytic_gradient(agg)


def test_length_bias_of_each_aggregation():
    # a long (8 tokens) and a short (2 tokens) response, same advantage, on-policy (rho = 1):
    # how much gradient does each *token* get?  (Dr.GRPO's argument, in numbers)
    mask = torch.tensor([[True] * 8, [True] * 2 + [False] * 6])
    adv = torch.tensor([1.0, 1.0])

    def per_token_grad(agg):
        x = torch.full((2, 8), -1.0, requires_grad=True)
        loss, _ = arm.policy_loss(x, x.detach(), adv, mask, agg=agg, max_len=8)
        loss.backward()
        return -x.grad[0, 0].item(), -x.grad[1, 0].item()  # (long, short)

    # token-mean: every token weighs 1 / (8 + 2), whatever its response's length
    assert per_token_grad("token-mean") == pytest.approx((1 / 10, 1 / 10))
    # seq-mean-token-mean: 1 / (B |o_i|); a short response's tokens get 4x more, each response 1/2 in
    # total. A long *wrong* answer is punished 4x less per token: the length bias Dr.GRPO removes.
    assert per_token_grad("seq-mean-token-mean") == pytest.approx((1 / 16, 1 / 4))
    # constant: 1 / (B * max_len), the same for every token and every batch
    assert per_token_grad("constant") == pytest.approx((1 / 16, 1 / 16))


def test_kl_to_a_reference_pulls_toward_it():
    x = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.5]])
    loss, stats = arm.policy_loss(x, x.detach(), torch.zeros(1), torch.ones(1, 2, dtype=torch.bool), ref_logprobs=ref, kl_coef=1.0)
    loss.backward()
    assert stats["kl"] > 0
    assert x.grad[0, 0] > 0 and x.grad[0, 1] < 0  # descent lowers logp where above ref, raises where below


# ---------------------------------------------------------------- errors a user can cause: one line each

def test_user_errors_are_one_clear_line():
    with pytest.raises(ValueError, match="rewards must be"):
        arm.grpo_advantages(torch.zeros(4))
    with pytest.raises(ValueError, match="scale"):
        arm.grpo_advantages(torch.zeros(1, 4), scale="mad")
    with pytest.raises(ValueError, match="answer_conf must be"):
        arm.arm_advantages(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2, 3), alpha=1.0)
    with pytest.raises(ValueError, match="low_frac"):
        arm.answer_confidence(torch.zeros(1, 4), torch.ones(1, 4, dtype=torch.bool), low_frac=0.0)
    with pytest.raises(ValueError, match="advantages must be"):
        arm.policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        arm.policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3, dtype=torch.bool), kl_coef=0.1)
    with pytest.raises(ValueError, match="unknown agg"):
        arm.policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3, dtype=torch.bool), agg="sum")
    with pytest.raises(ValueError, match="pass_at_k"):
        arm.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="pass_at_k"):
        arm.pass_at_k(4, 1, 5)


def test_confidences_outside_zero_one_are_refused():
    r = torch.tensor([[1.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        arm.arm_advantages(r, torch.tensor([0.5]), torch.tensor([[0.5, float("nan"), 0.5]]), alpha=1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        arm.arm_advantages(r, torch.tensor([2.0]), torch.tensor([[0.5, 0.5, 0.5]]), alpha=1.0)


def test_variant_options_are_checked():
    r, c_q, c_o = torch.tensor([[1.0, 0.0]]), torch.tensor([0.5]), torch.tensor([[0.5, 0.5]])
    with pytest.raises(ValueError, match="shift_rows must be one of"):
        arm.arm_advantages(r, c_q, c_o, alpha=1.0, shift_rows="wrong")
    with pytest.raises(ValueError, match="shift_center must be one of"):
        arm.arm_advantages(r, c_q, c_o, alpha=1.0, shift_center="mean")
    with pytest.raises(ValueError, match="all_correct must be one of"):
        arm.arm_advantages(r, c_q, c_o, alpha=1.0, all_correct="skip")
    with pytest.raises(ValueError, match="prompt_conf must be"):
        arm.arm_advantages(r, None, c_o, alpha=1.0)  # the paper's centre needs c(q)
    with pytest.raises(ValueError, match="answer_conf must be"):
        arm.arm_advantages(r, None, c_o[:, :1], alpha=1.0, shift_center="correct-mean")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        arm.arm_advantages(r, None, torch.tensor([[1.5, 0.5]]), alpha=1.0, shift_center="correct-mean")
