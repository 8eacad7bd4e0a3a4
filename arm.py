"""GRPO and ProGRPO's Advantage Re-weighting Mechanism (ARM): advantages, confidences, the loss.

The file follows METHOD.md from top to bottom, its definitions numbered as there:
    1. grpo_advantages     A_i = (r_i - mean r) / (std r + delta)
    2. answer_confidence   c(o|q) = exp(mean of the ceil(0.2 |o|) lowest token log-probs)
    3. prompt_confidence   c(q) = exp(mean_t log pi(q_t | q_<t)) = 1 / PPL(q)
    4. arm_advantages      A~_i = A_i + alpha (c(q) - c(o_i|q)) in groups with a correct answer
                           (options all_correct / shift_rows / shift_center: our ablations)
    5. policy_loss         the clipped surrogate with A~, token-mean over the batch (DAPO)
then token_entropy and pass_at_k for evaluation, and last a baseline beside ARM, the unlikeliness
reward (unlikeliness_advantages).

Choices where the paper is silent (where one is a keyword argument, its default is ours):
- std is the *population* std (divide by G, not G - 1): it is defined for a group of one, and for
  binary rewards it is sqrt(p (1 - p)). TRL's sample std is larger by sqrt(G / (G - 1)) and
  shrinks advantages by that factor. scale="none" is Dr.GRPO's r - mean r.
- A group whose rewards are all equal (a group of one included) gets advantage exactly 0.
- "Correct" means reward > 0, so ARM's "sum_k r_k = 0" test also works for {-1, 1} rewards.
- An empty response (no valid token) has c(o|q) = 1, a prompt with no predicted token c(q) = 1.
- all_correct="arm" applies ARM to all-correct groups too (the formula as written);
  all_correct="grpo" leaves them at A_i = 0 (the variant one secondary source describes).
  So a group of one (G = 1) has A = 0, and under ARM a correct one gets alpha (c(q) - c(o|q)).
Rewards, confidences and old/reference log-probs are constants: everything here detaches them.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValueError(f"arm.py: {msg}")


def grpo_advantages(rewards: torch.Tensor, *, eps: float = 1e-6, scale: str = "std") -> torch.Tensor:
    """METHOD.md definition 1 (GRPO advantage), per group of G responses to one prompt:

        scale="std":  A_i = (r_i - mean(r)) / (std(r) + eps)     std = population std (1/G)
        scale="none": A_i =  r_i - mean(r)                        (Dr.GRPO)

    rewards (P, G) -> (P, G) float32. Groups whose rewards are all equal, G = 1 included, get
    exactly 0 (not round-off / eps)."""
    _check(rewards.dim() == 2, f"rewards must be (P, G), got shape {tuple(rewards.shape)}")
    _check(scale in ("std", "none"), f"scale must be 'std' or 'none', got {scale!r}")
    r = rewards.detach().float()
    centred = r - r.mean(dim=1, keepdim=True)  # (P, G)
    all_equal = (r == r[:, :1]).all(dim=1, keepdim=True)  # (P, 1)
    centred = torch.where(all_equal, torch.zeros_like(centred), centred)
    if scale == "none":
        return centred
    return centred / (r.std(dim=1, correction=0, keepdim=True) + eps)


def answer_confidence(logprobs: torch.Tensor, mask: torch.Tensor, *, low_frac: float = 0.2) -> torch.Tensor:
    """METHOD.md definition 2 (answer confidence, Low-Probability Token Length Normalization):

        k_i      = ceil(low_frac * |o_i|)            (|o_i| = valid tokens of response i)
        c(o_i|q) = exp( mean of the k_i lowest log pi(o_{i,t} | q, o_{i,<t}) )     in (0, 1]

    logprobs (N, T) of the sampled tokens under the rollout policy, mask (N, T) bool -> (N,).
    Padding never counts; low_frac = 1 is the plain length-normalised likelihood."""
    _check(logprobs.shape == mask.shape and logprobs.dim() == 2,
           f"logprobs and mask must both be (N, T), got {tuple(logprobs.shape)} and {tuple(mask.shape)}")
    _check(0.0 < low_frac <= 1.0, f"low_frac must be in (0, 1], got {low_frac}")
    mask = mask.bool()
    lp = torch.where(mask, logprobs.detach().float(), math.inf)  # padding sorts last
    lowest, _ = lp.sort(dim=1)  # (N, T) ascending: the k lowest valid log-probs come first
    n = mask.sum(dim=1)  # (N,)
    # ceil in float64 with a small tolerance, so that 0.2 * 15 is 3 and not 4 (round-off)
    k = torch.ceil(n.double() * low_frac - 1e-9).clamp(min=1).to(n.dtype)  # (N,)
    pos = torch.arange(lp.shape[1], device=lp.device)[None]  # (1, T)
    take = (pos < k[:, None]) & (pos < n[:, None])  # (N, T); the second part: empty rows take nothing
    mean_low = torch.where(take, lowest, 0.0).sum(dim=1) / k  # (N,)
    return mean_low.exp()


def prompt_confidence(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """METHOD.md definition 3 (prompt confidence, our form of "prompt perplexity"):

        c(q) = exp( mean_{t >= 2} log pi(q_t | q_<t) ) = 1 / PPL(q)     in (0, 1]

    logprobs (P, T) of the prompt tokens that have a prediction, mask (P, T) bool -> (P,)."""
    _check(logprobs.shape == mask.shape and logprobs.dim() == 2,
           f"logprobs and mask must both be (P, T), got {tuple(logprobs.shape)} and {tuple(mask.shape)}")
    mask = mask.bool()
    total = torch.where(mask, logprobs.detach().float(), 0.0).sum(dim=1)  # (P,)
    return (total / mask.sum(dim=1).clamp(min=1)).exp()


SHIFT_ROWS = ("group", "correct")  # who gets the shift: paper = "group"
SHIFT_CENTER = ("prompt", "correct-mean")  # what c(o|q) is compared with: paper = "prompt" (c(q))
ALL_CORRECT = ("arm", "grpo")  # all-correct groups: paper = "arm" (shifted like any other)


def arm_advantages(rewards: torch.Tensor, prompt_conf: torch.Tensor | None, answer_conf: torch.Tensor, *,
                   alpha: float, eps: float = 1e-6, scale: str = "std", all_correct: str = "arm",
                   shift_rows: str = "group", shift_center: str = "prompt") -> torch.Tensor:
    """METHOD.md definition 4 (Eq. ARM), with A_i from grpo_advantages. The defaults are the paper:

        A~_i = A_i                                  if no r_k > 0 in the group
        A~_i = A_i + alpha * (c(q) - c(o_i|q))      otherwise

    rewards (P, G), prompt_conf c(q) (P,), answer_conf c(o|q) (P, G) -> (P, G) float32.
    Within a group the more confident answer gets the smaller advantage, which is what stops GRPO's
    rich-get-richer drift; c(q) moves the whole group by the same amount. alpha = 0 gives
    grpo_advantages bit for bit, whatever the options. A group of 4, two of its answers correct:

    >>> r = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    >>> c_q, c_o = torch.tensor([0.5]), torch.tensor([[0.8, 0.3, 0.2, 0.6]])
    >>> grpo_advantages(r)                       # (r - 0.5) / (0.5 + 1e-6) = +-0.999998
    tensor([[ 1.0000, -1.0000,  1.0000, -1.0000]])
    >>> 1.0 * (c_q[:, None] - c_o)               # the shift, alpha (c(q) - c(o_i|q)), alpha = 1
    tensor([[-0.3000,  0.2000,  0.3000, -0.1000]])
    >>> arm_advantages(r, c_q, c_o, alpha=1.0)   # A + shift: the sure correct answer gets 0.7, the unsure 1.3
    tensor([[ 0.7000, -0.8000,  1.3000, -1.1000]])

    Our departures from the paper (METHOD.md, "Our ablations"), each off by default:
      all_correct="grpo"           all-correct groups keep A_i = 0 (one secondary source's reading)
      shift_rows="correct"         only the correct answers are shifted; wrong ones keep A_i
      shift_center="correct-mean"  c(q) is replaced by the mean c(o|q) of the group's correct answers
                                   (prompt_conf is then not needed: None is accepted)
    With both "correct" and "correct-mean" the shift sums to zero over the correct answers: a pure
    re-weighting among them, the group's total left as GRPO's."""
    _check(all_correct in ALL_CORRECT, f"all_correct must be one of {ALL_CORRECT}, got {all_correct!r}")
    _check(shift_rows in SHIFT_ROWS, f"shift_rows must be one of {SHIFT_ROWS}, got {shift_rows!r}")
    _check(shift_center in SHIFT_CENTER, f"shift_center must be one of {SHIFT_CENTER}, got {shift_center!r}")
    A = grpo_advantages(rewards, eps=eps, scale=scale)  # (P, G) definition 1
    P, G = A.shape
    c_o = _confidence(answer_conf, (P, G), "answer_conf", A.device)  # (P, G) c(o_i|q), definition 2
    correct = rewards.detach().to(A.device) > 0  # (P, G)

    # ARM advantage, METHOD.md definition 4: A~_i = A_i + alpha (c(q) - c(o_i|q)) for every response of
    # a group with at least one correct answer, A~_i = A_i elsewhere
    shifted = correct.any(dim=1, keepdim=True)  # (P, 1), broadcast over the group's responses
    if shift_center == "prompt":
        c_q = _confidence(prompt_conf, (P,), "prompt_conf", A.device)[:, None]  # (P, 1) c(q), definition 3
        shift = alpha * (c_q - c_o)  # (P, G): the more confident answer gets the smaller push
    else:  # departure: the mean c(o|q) of the group's correct answers instead of c(q)
        c_bar = (c_o * correct).sum(1, keepdim=True) / correct.sum(1, keepdim=True).clamp(min=1)  # (P, 1)
        shift = alpha * (c_bar - c_o)  # (P, G); groups with no correct answer are not shifted
    if shift_rows == "correct":  # departure: wrong answers keep A_i
        shifted = shifted & correct
    if all_correct == "grpo":  # departure: all-correct groups keep A_i = 0
        shifted = shifted & ~correct.all(dim=1, keepdim=True)
    return torch.where(shifted, A + shift, A)


def _confidence(conf: torch.Tensor | None, shape: tuple, name: str, device: torch.device) -> torch.Tensor:
    """A confidence given to arm_advantages, as a float32 constant on `device`, checked: its shape, and
    every value in [0, 1] (NaN fails too)."""
    _check(conf is not None and tuple(conf.shape) == shape,
           f"{name} must be {shape}, got {None if conf is None else tuple(conf.shape)}")
    conf = conf.detach().float().to(device)
    _check(bool(((conf >= 0) & (conf <= 1)).all()), f"{name}: confidences must lie in [0, 1]")  # note: a CPU-GPU sync
    return conf


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
                eps_low: float = 0.2, eps_high: float = 0.28, agg: str = "token-mean",
                ref_logprobs: torch.Tensor | None = None, kl_coef: float = 0.0,
                max_len: int | None = None) -> tuple[torch.Tensor, dict]:
    """METHOD.md definition 5, the clipped surrogate with per-response advantages A~_i:

        rho_t = exp(log pi_theta(o_t) - log pi_old(o_t))
        l_t   = -min(rho_t A~_i, clip(rho_t, 1 - eps_low, 1 + eps_high) A~_i) + kl_coef * k3_t
        k3_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1      (only when ref_logprobs is given)

    and the loss aggregates l_t over valid tokens (B responses, |o_i| tokens each):
        "token-mean"          sum_i sum_t l_t / sum_i |o_i|             (DAPO, our default)
        "seq-mean-token-mean" (1/B) sum_i (1/|o_i|) sum_t l_t           (original GRPO)
        "constant"            sum_i sum_t l_t / (B * max_len)           (Dr.GRPO; max_len defaults to T)

    logprobs (B, T) with grad, old_logprobs (B, T), advantages (B,), mask (B, T) bool. Returns the
    scalar loss and stats (python floats, means over valid tokens): clip_low_frac / clip_high_frac
    (tokens whose gradient the clip switches off: rho < 1 - eps_low with A < 0, rho > 1 + eps_high
    with A > 0), ratio_mean, kl (the k3 estimate to the reference; 0 without one). With no valid
    token the loss is 0 (still differentiable) and the stats 0, never NaN."""
    B, T = mask.shape
    _check(logprobs.shape == mask.shape == old_logprobs.shape,
           f"logprobs, old_logprobs and mask must all be (B, T); got {tuple(logprobs.shape)}, "
           f"{tuple(old_logprobs.shape)}, {tuple(mask.shape)}")
    _check(tuple(advantages.shape) == (B,), f"advantages must be ({B},) (one per response), got {tuple(advantages.shape)}")
    _check(agg in ("token-mean", "seq-mean-token-mean", "constant"), f"unknown agg {agg!r}")
    _check(max_len is None or max_len >= 1, f"max_len must be >= 1, got {max_len}")
    _check(kl_coef == 0.0 or ref_logprobs is not None, f"kl_coef={kl_coef} needs ref_logprobs")
    mask = mask.bool()
    adv = advantages.detach().float()[:, None]  # (B, 1), broadcast to the response's tokens
    log_ratio = torch.where(mask, logprobs - old_logprobs.detach(), 0.0)  # (B, T); padding -> rho = 1
    ratio = log_ratio.exp()
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)  # (B, T)
    kl = torch.zeros_like(per_token)
    if ref_logprobs is not None:
        _check(ref_logprobs.shape == mask.shape, f"ref_logprobs must be {tuple(mask.shape)}, got {tuple(ref_logprobs.shape)}")
        d = torch.where(mask, ref_logprobs.detach() - logprobs, 0.0)  # log(pi_ref / pi_theta)
        kl = d.exp() - d - 1  # k3 >= 0, unbiased for KL(pi_theta || pi_ref)
        if kl_coef != 0.0:
            per_token = per_token + kl_coef * kl
    per_token = torch.where(mask, per_token, 0.0)
    n_tok = mask.sum()
    if agg == "token-mean":
        loss = per_token.sum() / n_tok.clamp(min=1)
    elif agg == "seq-mean-token-mean":
        loss = (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum() / max(B, 1)
    else:
        loss = per_token.sum() / (max(B, 1) * (max_len or T))
    with torch.no_grad():
        m = mask.float()
        per = torch.stack([
            ((ratio < 1 - eps_low) & (adv < 0)).float(), ((ratio > 1 + eps_high) & (adv > 0)).float(),
            ratio, kl])  # (4, B, T)
        vals = ((per * m).sum(dim=(1, 2)) / m.sum().clamp(min=1)).tolist()  # note: one CPU-GPU sync
    keys = ("clip_low_frac", "clip_high_frac", "ratio_mean", "kl")
    return loss, dict(zip(keys, vals))


def token_entropy(logits: torch.Tensor, mask: torch.Tensor, *, chunk: int = 1024) -> torch.Tensor:
    """Mean entropy of the policy over valid positions (a 0-dim float32 tensor):

        H_t = -sum_v p_v log p_v,  p = softmax(logits_t);   mean over t with mask_t

    logits (B, T, V) (divide by the sampling temperature first), mask (B, T). Only valid positions
    are gathered and converted to float32, `chunk` rows at a time: the copies stay (chunk, V)."""
    _check(logits.dim() == 3 and logits.shape[:2] == mask.shape,
           f"logits must be (B, T, V) and mask (B, T), got {tuple(logits.shape)} and {tuple(mask.shape)}")
    flat = logits.flatten(0, 1)  # (B*T, V), a view
    idx = mask.flatten().nonzero().squeeze(1)  # (M,) valid positions; note: a CPU-GPU sync point
    total = logits.new_zeros((), dtype=torch.float32)
    for s in range(0, idx.numel(), chunk):
        p = F.softmax(flat[idx[s:s + chunk]].float(), dim=-1)  # (c, V)
        total = total + torch.special.entr(p).sum()  # entr(0) = 0, so -inf logits are fine
    return total / max(idx.numel(), 1)


def _pass_at_k(n: int, c: int, k: int) -> float:
    _check(0 <= c <= n and 1 <= k <= n, f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def pass_at_k(n: int | np.ndarray, c: int | np.ndarray, k: int | np.ndarray) -> float | np.ndarray:
    """The unbiased pass@k estimator from n samples of which c are correct (Chen et al. 2021):

        pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i)

    The product form never builds a binomial, so it is exact to float64 for n in the thousands.
    Python ints give a float; numpy arrays (broadcast together) give an array."""
    if any(isinstance(x, np.ndarray) for x in (n, c, k)):
        return np.vectorize(_pass_at_k, otypes=[np.float64])(n, c, k)
    return _pass_at_k(int(n), int(c), int(k))


def pass_ks(n: int) -> list[int]:
    """The k an evaluation of n samples per prompt reports: 1, 2, 4, ..., and n itself."""
    ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
    return ks + ([n] if ks[-1] != n else [])


# ---------------------------------------------------------------- a baseline beside ARM (not the paper's)

def mean_logprob(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean log-prob over each response's own tokens: (B, T) -> (B,). The unlikeliness baseline
    ranks a group's responses by it."""
    return torch.where(mask, logprobs, 0.0).sum(1) / mask.sum(1).clamp(min=1)


def unlikeliness_advantages(rewards: torch.Tensor, seq_logprob: torch.Tensor, *, beta: float, eps: float = 1e-6,
                            scale: str = "std") -> torch.Tensor:
    """A baseline with ARM's aim: the unlikeliness reward (He, Fried, Welleck 2025, arXiv 2506.02355).

        rank_i = position of response i when the group is sorted by seq_logprob, ascending
                 (0 = the least likely, G - 1 = the most likely; ties keep the order of the rows)
        r'_i   = r_i (1 - beta rank_i / G)
        A_i    = grpo_advantages(r')

    rewards (P, G), seq_logprob (P, G) the mean token log-prob of each response under the rollout
    policy (a constant) -> (P, G) float32. A correct response gets less the more likely it is; a wrong
    one keeps r = 0 for binary rewards. beta = 0 is GRPO bit for bit. Normalising with our GRPO (the
    population std, eps 1e-6) keeps the comparison with grpo and arm like for like; their release
    uses the sample std, a common factor sqrt(G / (G - 1)) on every advantage of a group."""
    _check(rewards.dim() == 2 and tuple(seq_logprob.shape) == tuple(rewards.shape),
           f"rewards and seq_logprob must both be (P, G), got {tuple(rewards.shape)} and {tuple(seq_logprob.shape)}")
    _check(math.isfinite(beta) and 0.0 <= beta <= 1.0, f"beta must be in [0, 1], got {beta}")
    if beta == 0:
        return grpo_advantages(rewards, eps=eps, scale=scale)
    G = rewards.shape[1]
    order = seq_logprob.detach().float().argsort(dim=1, stable=True)  # (P, G) rows from least to most likely
    rank = order.argsort(dim=1, stable=True).to(rewards.device)  # (P, G) each row's place in that order
    return grpo_advantages(rewards.detach().float() * (1 - beta * rank.float() / G), eps=eps, scale=scale)
