"""Batched generation with a preallocated KV cache (gpt-fast style, for GRPO rollouts).

    prefill      all P distinct prompts in one left-padded pass; the cache of each prompt is
                 then copied to its G sample rows (rows are prompt-major: row = p * G + g)
    decode_one   one token for every row: a (B, 1) forward into the cache, then sample
    generate     prefill, then decode until every row has emitted an EOS or max_new_tokens

The policy whose log-probs we report is pi(. | x) = softmax(logits / T) (T = 0 -> greedy
sampling, log-probs at T = 1), *before* top-k/top-p filtering, i.e. exactly what
`logits_to_logprobs` gives on a full forward pass at training time. top-k/top-p only change
which token is drawn, through `logits_to_probs`.

Masks are built from lengths, never by comparing token ids to a pad id, so a model whose pad
id equals its EOS id works.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from model import KVCache


@dataclass
class Generation:
    tokens: torch.Tensor  # Long (B, N), 0 after each row's end (never use it to build masks)
    logprobs: torch.Tensor  # Float (B, N), log pi_old of each sampled token, 0 after the end
    mask: torch.Tensor  # Bool (B, N), True for generated positions up to and including EOS
    lengths: torch.Tensor  # Long (B,), generated tokens per row (incl. EOS)
    finished: torch.Tensor  # Bool (B,), True if the row ended with EOS (False: cut at max_new_tokens)
    prompt_logprobs: torch.Tensor | None = None  # Float (P, Lmax-1): log pi(q_t | q_<t), t >= 1, left-aligned
    prompt_mask: torch.Tensor | None = None  # Bool (P, Lmax-1)


def logits_to_logprobs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log pi = log_softmax(logits / T) in float32 (T == 0 -> T = 1). Sampling and training both use this."""
    t = temperature if temperature > 0 else 1.0
    return torch.log_softmax(logits.float() / t, dim=-1)


def logits_to_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """The distribution tokens are drawn from: softmax(logits / T) restricted to the top-k tokens
    and to the smallest set whose probability reaches top_p (nucleus), renormalised.
    T == 0 gives the one-hot argmax (greedy). logits (B, V) -> probs (B, V) float32."""
    logits = logits.float()
    if temperature <= 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = torch.sort(probs, dim=-1, descending=True)
        # drop a token if the tokens strictly more likely than it already reach top_p
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        probs = probs.scatter(-1, idx, sorted_p.masked_fill(drop, 0.0))
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator=None) -> torch.Tensor:
    """logits (B, V) -> tokens (B,)."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = logits_to_probs(logits, temperature, top_k, top_p)
    # inverse-CDF draw: one uniform per row (torch.multinomial draws one exponential per vocab entry)
    cdf = probs.cumsum(-1)  # (B, V)
    total = cdf[:, -1:]  # (B, 1), ~1
    u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # u < total even if rand * total rounds up
    # the first index with cdf > u exists (cdf[-1] = total > u) and has cdf[i-1] <= u < cdf[i]: probability > 0
    return torch.searchsorted(cdf, u, right=True).squeeze(-1)


def _check_inputs(model, prompts, max_new_tokens, samples_per_prompt, temperature, top_p, top_k):
    cfg = model.config
    if not isinstance(prompts, (list, tuple)) or len(prompts) == 0:
        raise ValueError("generate: the prompt list is empty")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    if not isinstance(samples_per_prompt, int) or samples_per_prompt < 1:
        raise ValueError(f"generate: samples_per_prompt must be a positive integer, got {samples_per_prompt!r}")
    if temperature < 0 or not 0.0 < top_p <= 1.0 or top_k < 0:
        raise ValueError(f"generate: need temperature >= 0, 0 < top_p <= 1, top_k >= 0 (got {temperature}, {top_p}, {top_k})")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"generate: prompt {i} is empty")
        if len(p) + max_new_tokens > cfg.max_position_embeddings:
            raise ValueError(f"generate: prompt {i} has {len(p)} tokens + max_new_tokens {max_new_tokens} "
                             f"> max_position_embeddings {cfg.max_position_embeddings}")
        if min(p) < 0 or max(p) >= cfg.vocab_size:
            raise ValueError(f"generate: prompt {i} has a token id outside [0, {cfg.vocab_size})")


def prefill(model, prompts: list[list[int]], cache: KVCache, device, all_logits: bool = False):
    """Left-pad the prompts into one batch and run it through the model, filling `cache`.
    Returns logits (P, T0, V) if all_logits else (P, 1, V), the padded ids (P, T0) and the mask (P, T0)."""
    T0 = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (T0 - len(p)) + list(p) for p in prompts], dtype=torch.long).to(device)  # (P, T0)
    lengths = torch.tensor([len(p) for p in prompts]).to(device)
    mask = torch.arange(T0, device=device)[None, :] >= (T0 - lengths)[:, None]  # (P, T0), from lengths
    logits = model(ids, mask, cache=cache, start=0, last_only=not all_logits)
    return logits, ids, mask


def prompt_logprobs_from_prefill(logits, ids, mask, temperature):
    """log pi(q_t | q_<t) for t >= 1 of each left-padded prompt, left-aligned: (P, T0-1) and mask."""
    P, T0 = ids.shape
    lp = logits_to_logprobs(logits[:, :-1], temperature).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (P, T0-1)
    n_pad = (~mask).sum(-1, keepdim=True)  # (P, 1)
    idx = (torch.arange(T0 - 1, device=ids.device)[None, :] + n_pad).clamp(max=T0 - 2)  # shift left by n_pad
    out_mask = torch.arange(T0 - 1, device=ids.device)[None, :] < (T0 - 1 - n_pad)  # (P, T0-1)
    return lp.gather(1, idx).masked_fill(~out_mask, 0.0), out_mask


def decode_one_token(model, tok, cache: KVCache, col: int, positions, key_mask):
    """Feed one token per row (B,) at cache column `col` (rotary positions (B, 1)); logits (B, V)."""
    return model(tok[:, None], key_mask, positions=positions, cache=cache, start=col)[:, -1]


@torch.no_grad()
def generate(
    model,
    prompts: list[list[int]],
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_ids=(),
    generator: torch.Generator | None = None,
    samples_per_prompt: int = 1,
    return_prompt_logprobs: bool = False,
) -> Generation:
    """Sample `samples_per_prompt` completions for each prompt; rows are prompt-major (p * G + g).

    eos_token_ids: tokens that end a row; empty -> model.eos_token_ids (if the model has them).
    Prompt log-probs (if asked) use the same temperature as the sampled tokens.
    """
    _check_inputs(model, prompts, max_new_tokens, samples_per_prompt, temperature, top_p, top_k)
    cfg = model.config
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    eos = list(eos_token_ids) or list(getattr(model, "eos_token_ids", []))
    eos_t = torch.tensor(eos, dtype=torch.long, device=device)
    P, G = len(prompts), samples_per_prompt
    B = P * G
    T0 = max(len(p) for p in prompts)
    padded = any(len(p) != T0 for p in prompts)
    S = T0 + max_new_tokens  # cache columns: padded prompt, then one per generated token

    cache = KVCache(cfg, P, S, dtype, device)
    logits, ids, pmask = prefill(model, prompts, cache, device, all_logits=return_prompt_logprobs)  # each prompt once
    out_plp = out_pmask = None
    if return_prompt_logprobs:
        out_plp, out_pmask = prompt_logprobs_from_prefill(logits, ids, pmask, temperature)
    next_logits = logits[:, -1].repeat_interleave(G, dim=0)  # (B, V)
    if G > 1:
        cache = cache.repeat_rows(G)
    del logits

    key_mask = torch.ones(B, S, dtype=torch.bool, device=device)  # (B, S): real keys
    key_mask[:, :T0] = pmask.repeat_interleave(G, dim=0)
    pos = pmask.sum(-1).repeat_interleave(G, dim=0)[:, None]  # (B, 1) position of the next token

    tokens = torch.zeros(B, max_new_tokens, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    n = 0
    for i in range(max_new_tokens):
        tok = sample(next_logits, temperature, top_k, top_p, generator)  # (B,)
        lp = logits_to_logprobs(next_logits, temperature).gather(-1, tok[:, None]).squeeze(-1)
        alive = ~finished
        tokens[:, i] = tok
        logprobs[:, i] = lp
        lengths += alive.long()
        finished |= alive & torch.isin(tok, eos_t)
        n = i + 1
        if n == max_new_tokens or bool(finished.all()):  # note: a CPU-GPU sync point per step
            break
        col = T0 + i  # cache column of this token
        step_mask = key_mask[:, : col + 1] if padded else None  # None: no padding, nothing to mask
        next_logits = decode_one_token(model, tok, cache, col, pos + i, step_mask)

    mask = torch.arange(n, device=device)[None, :] < lengths[:, None]  # (B, N), from lengths
    tokens = tokens[:, :n].masked_fill(~mask, 0)
    logprobs = logprobs[:, :n].masked_fill(~mask, 0.0)
    return Generation(tokens, logprobs, mask, lengths, finished, out_plp, out_pmask)
