"""arm.py against METHOD.md, read in its order: the paper's math with the paper's settings.

Definition 1 (GRPO advantage), 2 (answer confidence c(o|q)), 3 (prompt confidence c(q)), 4 (ARM's
advantage), 5 (the clipped loss, token mean over the batch), then what masks and constants must
not change, then the evaluation measures: token entropy and pass@k. Each definition has a
hand-worked example first, then hypothesis properties and degenerate inputs.

Our ablations (all_correct, shift_rows, shift_center), the baselines (Dr.GRPO's scale="none", the
other loss aggregations, the KL term) and the argument checks are in test_arm_ablations.py; the
unlikeliness baseline in test_unlikeliness.py; the softmax-bandit evidence for the mechanism in
test_bandit.py."""
import doctest
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import arm

FEW = settings(max_examples=40, deadline=None)
AGGS = ("token-mean", "seq-mean-token-mean", "constant")  # the first is the paper's (DAPO)

unit = st.floats(0.0, 1.0, allow_subnormal=False)


@st.composite
def groups(draw, max_p=4, max_g=6):
    """rewards (P, G) in {0, 1}, c(q) (P,), c(o|q) (P, G), alpha."""
    P, G = draw(st.integers(1, max_p)), draw(st.integers(1, max_g))
    r = torch.tensor(draw(st.lists(st.lists(st.sampled_from([0.0, 1.0]), min_size=G, max_size=G), min_size=P, max_size=P)))
    c_q = torch.tensor(draw(st.lists(unit, min_size=P, max_size=P)))
    c_o = torch.tensor(draw(st.lists(st.lists(unit, min_size=G, max_size=G), min_size=P, max_size=P)))
    alpha = draw(st.floats(0.0, 10.0))
    return r, c_q, c_o, alpha


@st.composite
def responses(draw, max_n=4, max_t=12):
    """log-probs (N, T) in [-30, 0] and a mask with at least one valid token per row."""
    N, T = draw(st.integers(1, max_n)), draw(st.integers(1, max_t))
    lp = torch.tensor(draw(st.lists(st.lists(st.floats(-30.0, 0.0), min_size=T, max_size=T), min_size=N, max_size=N)))
    m = torch.tensor(draw(st.lists(st.lists(st.booleans(), min_size=T, max_size=T), min_size=N, max_size=N)))
    m[:, 0] |= ~m.any(dim=1)  # no empty responses here (tested separately)
    return lp, m


# ---------------------------------------------------------------- definition 1: the GRPO advantage

def test_grpo_advantage_by_hand():
    # rewards 1, 0, 1, 0:  mean = 0.5,  population std = sqrt(mean((r - 0.5)^2)) = 0.5
    # GRPO:  A = (r - 0.5) / (0.5 + 1e-6) = +-a  with  a = 0.5 / 0.500001
    r = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    a = 0.5 / 0.500001
    torch.testing.assert_close(arm.grpo_advantages(r), torch.tensor([[a, -a, a, -a]]), rtol=0, atol=1e-7)


@FEW
@given(st.integers(1, 8), st.floats(-1e6, 1e6), st.sampled_from(["std", "none"]))
def test_equal_rewards_give_exactly_zero(G, value, scale):
    # 0.1 * 7 / 7 != 0.1 in float32: without the all-equal guard this would be round-off / 1e-6
    r = torch.full((3, G), value)
    assert torch.equal(arm.grpo_advantages(r, scale=scale), torch.zeros(3, G))


# ---------------------------------------------------------------- definition 2: answer confidence c(o|q)

def test_answer_confidence_by_hand():
    # one response of 5 tokens, then 2 padding positions holding garbage
    lp = torch.tensor([[-0.1, -2.0, -0.5, -3.0, -0.2, -99.0, float("nan")]])
    m = torch.tensor([[True] * 5 + [False] * 2])
    # low_frac 0.2: ceil(0.2 * 5) = 1 token, the lowest: -3.0
    torch.testing.assert_close(arm.answer_confidence(lp, m), torch.tensor([math.exp(-3.0)]))
    # low_frac 0.5: ceil(2.5) = 3 tokens: -3.0, -2.0, -0.5
    torch.testing.assert_close(arm.answer_confidence(lp, m, low_frac=0.5), torch.tensor([math.exp(-5.5 / 3)]))
    # low_frac 1.0: all 5 tokens, exp(mean log-prob)
    torch.testing.assert_close(arm.answer_confidence(lp, m, low_frac=1.0), torch.tensor([math.exp(-5.8 / 5)]))
    # a response of length 1 uses its one token
    assert arm.answer_confidence(torch.tensor([[-0.7, 0.0]]), torch.tensor([[True, False]])).item() == pytest.approx(math.exp(-0.7))


def test_answer_confidence_ceil_is_not_fooled_by_round_off():
    # 0.2 * 15 = 3.0000000000000004 in floating point: ceil must still take 3 tokens, not 4
    lp = -torch.arange(15, dtype=torch.float32)[None]  # 0, -1, ..., -14
    c = arm.answer_confidence(lp, torch.ones(1, 15, dtype=torch.bool))
    torch.testing.assert_close(c, torch.tensor([math.exp(-(14 + 13 + 12) / 3)]))


@FEW
@given(responses(), st.sampled_from([0.1, 0.2, 0.25, 0.3, 0.5, 0.7, 1.0]))
def test_answer_confidence_matches_its_definition(data, low_frac):
    lp, m = data
    c = arm.answer_confidence(lp, m, low_frac=low_frac)
    assert ((c > 0) & (c <= 1)).all()
    for i in range(lp.shape[0]):  # the definition, one response at a time, with an exact ceil
        valid = sorted(lp[i][m[i]].tolist())
        k = math.ceil(Fraction(str(low_frac)) * len(valid))
        assert c[i].item() == pytest.approx(math.exp(sum(valid[:k]) / k), rel=1e-5)
    full = torch.where(m, lp, 0.0).sum(1) / m.sum(1)
    torch.testing.assert_close(arm.answer_confidence(lp, m, low_frac=1.0), full.exp())


def test_empty_response_has_confidence_one():
    c = arm.answer_confidence(torch.zeros(2, 3), torch.tensor([[False] * 3, [True, False, False]]))
    assert torch.equal(c, torch.tensor([1.0, 1.0]))


def test_extreme_confidences_stay_finite():
    lp = torch.tensor([[-1e4, -1e4], [-1e-30, 0.0], [-88.0, -104.0]])
    c = arm.answer_confidence(lp, torch.ones(3, 2, dtype=torch.bool), low_frac=1.0)
    assert torch.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()
    r = torch.tensor([[1.0, 0.0, 1.0]])
    for c_q in (0.0, 1e-38, 1.0):  # ... and so does ARM's advantage built on them (definition 4)
        out = arm.arm_advantages(r, torch.tensor([c_q]), c[None], alpha=100.0)
        assert torch.isfinite(out).all()


# ---------------------------------------------------------------- definition 3: prompt confidence c(q)

def test_prompt_confidence_is_inverse_perplexity():
    lp = torch.tensor([[-1.0, -2.0, -3.0, 5.0], [-0.5, 0.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, True, False], [True, False, False, False]])
    torch.testing.assert_close(arm.prompt_confidence(lp, m), torch.tensor([math.exp(-2.0), math.exp(-0.5)]))
    # a prompt with a single token has no prediction: c(q) = 1 (shifts its group uniformly anyway)
    assert arm.prompt_confidence(torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool)).item() == 1.0


# ---------------------------------------------------------------- definition 4: ARM's advantage

def test_arm_advantages_docstring_example():
    # the worked example in arm_advantages' docstring: its printed numbers are what the code returns
    finder = doctest.DocTestFinder()
    [test] = finder.find(arm.arm_advantages, "arm_advantages", globs=vars(arm).copy())
    assert test.examples, "arm_advantages' docstring lost its worked example"
    result = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE).run(test)
    assert result.failed == 0


def test_group_of_four_by_hand():
    # the group of test_grpo_advantage_by_hand, A = +-a; ARM with alpha = 0.5, c(q) = 0.5,
    # c(o|q) = 0.8, 0.3, 0.2, 0.6:
    #   A~ = A + 0.5 * (0.5 - c(o|q)) = a - 0.15, -a + 0.10, a + 0.15, -a - 0.05
    # the confident correct answer (0.8) now gets less than the unsure one (0.2): 0.85 vs 1.15
    r = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    a = 0.5 / 0.500001
    c_q, c_o = torch.tensor([0.5]), torch.tensor([[0.8, 0.3, 0.2, 0.6]])
    expected = torch.tensor([[a - 0.15, -a + 0.10, a + 0.15, -a - 0.05]])
    torch.testing.assert_close(arm.arm_advantages(r, c_q, c_o, alpha=0.5), expected, rtol=0, atol=1e-6)


@FEW
@given(groups(), st.sampled_from(["std", "none"]), st.sampled_from(["arm", "grpo"]))
def test_alpha_zero_is_grpo_bit_for_bit(g, scale, all_correct):
    r, c_q, c_o, _ = g
    out = arm.arm_advantages(r, c_q, c_o, alpha=0.0, scale=scale, all_correct=all_correct)
    assert torch.equal(out, arm.grpo_advantages(r, scale=scale))


@FEW
@given(groups())
def test_groups_without_a_correct_answer_are_untouched(g):
    r, c_q, c_o, alpha = g
    none_correct = (r == 0).all(dim=1)
    out = arm.arm_advantages(r, c_q, c_o, alpha=alpha)
    assert torch.equal(out[none_correct], arm.grpo_advantages(r)[none_correct])
    assert (out[none_correct] == 0).all()  # binary rewards: all wrong means all equal means 0


@FEW
@given(groups())
def test_more_confident_answer_gets_lower_advantage_all_else_equal(g):
    r, c_q, c_o, alpha = g
    out = arm.arm_advantages(r, c_q, c_o, alpha=alpha)
    for p in range(r.shape[0]):
        if not (r[p] > 0).any():
            continue
        for i, j in itertools.permutations(range(r.shape[1]), 2):
            if r[p, i] != r[p, j] or c_o[p, i] < c_o[p, j]:
                continue  # only compare like with like: same reward, c_i >= c_j
            assert out[p, i] <= out[p, j]
            if alpha >= 0.01 and c_o[p, i] - c_o[p, j] > 1e-3:
                assert out[p, i] < out[p, j]


@FEW
@given(groups(), unit)
def test_prompt_confidence_shifts_a_group_uniformly(g, new_c):
    r, c_q, c_o, alpha = g
    c_q2 = torch.full_like(c_q, new_c)
    diff = arm.arm_advantages(r, c_q2, c_o, alpha=alpha) - arm.arm_advantages(r, c_q, c_o, alpha=alpha)  # (P, G)
    expected = torch.where((r > 0).any(dim=1, keepdim=True), alpha * (c_q2 - c_q)[:, None], 0.0).expand_as(diff)
    torch.testing.assert_close(diff, expected, rtol=0, atol=1e-5 * (1 + alpha))


@FEW
@given(groups(), st.randoms(use_true_random=False))
def test_permuting_responses_permutes_advantages(g, rnd):
    r, c_q, c_o, alpha = g
    perm = list(range(r.shape[1]))
    rnd.shuffle(perm)
    out = arm.arm_advantages(r, c_q, c_o, alpha=alpha)
    torch.testing.assert_close(arm.arm_advantages(r[:, perm], c_q, c_o[:, perm], alpha=alpha), out[:, perm],
                               rtol=1e-6, atol=1e-6)


def test_all_correct_groups_are_shifted_as_written():
    # every r > 0: GRPO gives 0, the formula as written gives alpha (c(q) - c(o|q))
    r = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    c_q, c_o = torch.tensor([0.5, 0.5]), torch.tensor([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]])
    torch.testing.assert_close(arm.arm_advantages(r, c_q, c_o, alpha=1.0)[0], torch.tensor([-0.4, 0.0, 0.4]))


def test_group_of_one():
    # G = 1: the group's mean is its reward, so GRPO's advantage is 0 (population std 0, no NaN).
    # Under ARM a correct single response is an all-correct group: it gets alpha (c(q) - c(o|q));
    # a wrong one gets 0.
    r = torch.tensor([[1.0], [0.0]])
    assert torch.equal(arm.grpo_advantages(r), torch.zeros(2, 1))
    c_q, c_o = torch.tensor([0.5, 0.5]), torch.tensor([[0.9], [0.9]])
    torch.testing.assert_close(arm.arm_advantages(r, c_q, c_o, alpha=1.0), torch.tensor([[-0.4], [0.0]]))


# ---------------------------------------------------------------- definition 5: the clipped loss, token mean

def loss_inputs(seed, B=5, T=7):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, T, generator=g) * 3
    lp = old + 0.4 * torch.randn(B, T, generator=g)  # ratios around 1, some beyond the clip
    ref = old + 0.3 * torch.randn(B, T, generator=g)
    adv = torch.randn(B, generator=g)
    adv[0] = 0.0
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lengths[:, None]  # from lengths, right padded
    return lp, old, ref, adv, mask


def reference_token_losses(lp, old, ref, adv, mask, eps_low, eps_high, kl_coef):
    """l_t of METHOD.md definition 5, one token at a time."""
    out = torch.zeros_like(lp)
    for i, t in mask.nonzero().tolist():
        rho = math.exp(lp[i, t] - old[i, t])
        a = adv[i].item()
        d = (ref[i, t] - lp[i, t]).item()
        out[i, t] = -min(rho * a, min(max(rho, 1 - eps_low), 1 + eps_high) * a) + kl_coef * (math.exp(d) - d - 1)
    return out


def check_analytic_gradient(agg):
    # d l_t / d logp_t = -A rho_t   where the unclipped branch is active (A > 0: rho <= 1 + eps_high;
    # A < 0: rho >= 1 - eps_low), 0 where the clip holds it constant, plus kl_coef (1 - exp(ref - logp))
    lp, old, ref, adv, mask = loss_inputs(3)
    B, T = mask.shape
    kl_coef, eps_low, eps_high = 0.1, 0.2, 0.28
    x = lp.clone().requires_grad_()
    loss, _ = arm.policy_loss(x, old, adv, mask, agg=agg, ref_logprobs=ref, kl_coef=kl_coef, max_len=10)
    loss.backward()
    rho = (lp - old).exp()
    A = adv[:, None]
    active = torch.where(A > 0, rho <= 1 + eps_high, rho >= 1 - eps_low)
    d_lt = -A * rho * active + kl_coef * (1 - (ref - lp).exp())  # (B, T)
    weight = {"token-mean": 1 / mask.sum(), "constant": 1 / (B * 10),
              "seq-mean-token-mean": 1 / (B * mask.sum(1, keepdim=True))}[agg]
    torch.testing.assert_close(x.grad, torch.where(mask, d_lt * weight, 0.0))
    assert ((rho > 1 + eps_high) & mask).any() and ((rho < 1 - eps_low) & mask).any()  # both clips exercised


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_mean_loss_matches_its_formula(seed):
    lp, old, ref, adv, mask = loss_inputs(seed)
    l_t = reference_token_losses(lp, old, ref, adv, mask, 0.2, 0.28, 0.05)
    loss, _ = arm.policy_loss(lp, old, adv, mask, agg="token-mean", ref_logprobs=ref, kl_coef=0.05, max_len=16)
    torch.testing.assert_close(loss, l_t.sum() / mask.sum())


def test_gradient_equals_the_analytic_gradient():
    check_analytic_gradient("token-mean")


@pytest.mark.parametrize("eps_low,eps_high", [(0.2, 0.28), (0.1, 0.5)])
def test_clipping_switches_off_exactly_at_the_bounds(eps_low, eps_high):
    d = 1e-3
    lo, hi = 1 - eps_low, 1 + eps_high
    # (ratio, advantage, gradient expected?) -- the clip only ever stops an update that would push
    # the ratio further out on the side the advantage favours
    cases = [(hi - d, +1.0, True), (hi + d, +1.0, False),  # A > 0: stop once pi grew past 1 + eps_high
             (lo - d, +1.0, True), (lo + d, +1.0, True),  # ... but never stop raising a shrunken good token
             (lo + d, -1.0, True), (lo - d, -1.0, False),  # A < 0: stop once pi shrank past 1 - eps_low
             (hi + d, -1.0, True), (hi - d, -1.0, True)]  # ... but never stop lowering a grown bad token
    ratio = torch.tensor([[c[0]] for c in cases], dtype=torch.float64)
    old = torch.full_like(ratio, -1.0)
    x = (old + ratio.log()).float().requires_grad_()
    adv = torch.tensor([c[1] for c in cases])
    loss, stats = arm.policy_loss(x, old.float(), adv, torch.ones_like(x, dtype=torch.bool), eps_low=eps_low, eps_high=eps_high)
    loss.backward()
    for (rho, a, on), g in zip(cases, x.grad[:, 0].tolist()):
        if on:
            assert g == pytest.approx(-a * rho / len(cases), rel=1e-4)
        else:
            assert g == 0.0
    assert stats["clip_high_frac"] == pytest.approx(1 / 8) and stats["clip_low_frac"] == pytest.approx(1 / 8)


def test_stats_are_floats_and_right():
    lp, old, ref, adv, mask = loss_inputs(4)
    _, stats = arm.policy_loss(lp, old, adv, mask, ref_logprobs=ref)
    assert all(type(v) is float for v in stats.values())
    assert stats.keys() == {"clip_low_frac", "clip_high_frac", "ratio_mean", "kl"}
    m = mask
    assert stats["ratio_mean"] == pytest.approx((lp - old).exp()[m].mean().item(), rel=1e-5)
    d = (ref - lp)[m]
    assert stats["kl"] == pytest.approx((d.exp() - d - 1).mean().item(), rel=1e-5)
    assert arm.policy_loss(lp, old, adv, mask)[1]["kl"] == 0.0  # no reference, no KL


def test_all_masked_input_gives_zero_loss_not_nan():
    for agg in AGGS:
        x = torch.full((3, 4), float("-inf"), requires_grad=True)
        loss, stats = arm.policy_loss(x, torch.full((3, 4), float("-inf")), torch.ones(3), torch.zeros(3, 4, dtype=torch.bool),
                                      agg=agg, ref_logprobs=torch.zeros(3, 4), kl_coef=0.1)
        loss.backward()
        assert loss.dim() == 0 and loss.item() == 0.0 and (x.grad == 0).all()
        assert all(math.isfinite(v) for v in stats.values())


# ---------------------------------------------------------------- padding never counts; constants stay constants

@FEW
@given(responses(), st.integers(1, 5), st.sampled_from([-1e4, float("-inf"), float("nan"), 3.0]))
def test_padding_changes_nothing(data, extra, garbage):
    lp, m = data
    N, T = lp.shape
    lp_pad = torch.cat([lp, torch.full((N, extra), garbage)], dim=1)
    m_pad = torch.cat([m, torch.zeros(N, extra, dtype=torch.bool)], dim=1)
    # equal up to float summation order (a wider row may be summed in a different order)
    torch.testing.assert_close(arm.answer_confidence(lp_pad, m_pad), arm.answer_confidence(lp, m), rtol=1e-5, atol=0)
    torch.testing.assert_close(arm.prompt_confidence(lp_pad, m_pad), arm.prompt_confidence(lp, m), rtol=1e-5, atol=0)
    old = lp * 0.9  # any old log-probs; the padding holds garbage in both
    old_pad = torch.cat([old, torch.full((N, extra), garbage)], dim=1)
    adv = torch.linspace(-1.5, 1.5, N)
    for agg in AGGS:
        x, x_pad = lp.clone().requires_grad_(), lp_pad.clone().requires_grad_()
        loss, stats = arm.policy_loss(x, old, adv, m, agg=agg, max_len=20, ref_logprobs=old, kl_coef=0.1)
        loss_pad, stats_pad = arm.policy_loss(x_pad, old_pad, adv, m_pad, agg=agg, max_len=20, ref_logprobs=old_pad, kl_coef=0.1)
        loss.backward()
        loss_pad.backward()
        torch.testing.assert_close(loss_pad, loss)
        torch.testing.assert_close(x_pad.grad[:, :T], x.grad)
        assert (x_pad.grad[:, T:] == 0).all()
        assert stats_pad == pytest.approx(stats)


def test_no_gradient_through_rewards_or_confidences():
    r = torch.tensor([[1.0, 0.0, 1.0]], requires_grad=True)
    c_q, c_o = torch.tensor([0.5], requires_grad=True), torch.tensor([[0.2, 0.3, 0.9]], requires_grad=True)
    assert not arm.arm_advantages(r, c_q, c_o, alpha=1.0).requires_grad
    lp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    assert not arm.answer_confidence(lp, torch.ones(1, 2, dtype=torch.bool)).requires_grad
    assert arm.grpo_advantages(r.double()).dtype == torch.float32


# ---------------------------------------------------------------- evaluation: token entropy

def test_token_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g) * 3
    mask = torch.tensor([[True] * 5, [True] * 2 + [False] * 3, [False] * 5])
    logits[1, 2:] = float("nan")  # padding positions never count
    valid = logits[mask]
    direct = -(valid.softmax(-1) * valid.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(arm.token_entropy(logits, mask), direct)
    torch.testing.assert_close(arm.token_entropy(logits, mask, chunk=2), direct)  # chunking changes nothing
    # uniform over V: log V;  a near one-hot: ~0;  -inf logits (a masked vocabulary): finite
    assert arm.token_entropy(torch.zeros(1, 1, 11), torch.ones(1, 1, dtype=torch.bool)).item() == pytest.approx(math.log(11))
    assert arm.token_entropy(torch.tensor([[[1e4, 0.0, 0.0]]]), torch.ones(1, 1, dtype=torch.bool)).item() == 0.0
    half = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    assert arm.token_entropy(half, torch.ones(1, 1, dtype=torch.bool)).item() == pytest.approx(math.log(2))
    assert arm.token_entropy(logits, torch.zeros(3, 5, dtype=torch.bool)).item() == 0.0
    assert arm.token_entropy(logits.bfloat16(), mask).dtype == torch.float32


# ---------------------------------------------------------------- evaluation: pass@k

def test_pass_at_k_matches_brute_force():
    # pass@k = P(a uniformly random k-subset of the n samples holds a correct one)
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(samples, k))
                brute = sum(any(s) for s in subsets) / len(subsets)
                assert arm.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("n,c,k", [(1024, 1, 1), (1024, 3, 512), (1024, 100, 32), (1024, 1000, 1), (1024, 7, 1017), (1000, 1, 999)])
def test_pass_at_k_is_exact_for_large_n(n, c, k):
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))  # big integers, exact
    assert arm.pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


def test_pass_at_k_edges_and_arrays():
    assert arm.pass_at_k(32, 0, 8) == 0.0 and arm.pass_at_k(32, 32, 8) == 1.0
    assert arm.pass_at_k(32, 5, 1) == pytest.approx(5 / 32)
    assert arm.pass_at_k(32, 30, 3) == 1.0  # n - c < k: every 3-subset has a correct sample
    out = arm.pass_at_k(np.array([32, 32, 32]), np.array([0, 5, 32]), 1)
    np.testing.assert_allclose(out, [0.0, 5 / 32, 1.0])
    ks = [arm.pass_at_k(64, 3, k) for k in (1, 2, 4, 8, 16, 32, 64)]
    assert ks == sorted(ks) and ks[-1] == 1.0
