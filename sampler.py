"""Batched generation with a preallocated KV cache (gpt-fast style, for GRPO rollouts).

    prefill      all P distinct prompts in one left-padded pass; the cache of each prompt is
                 then copied to its G sample rows (rows are prompt-major: row = p * G + g)
    decode_one   one token for every row: a (B, 1) forward into the cache, then sample
    generate     prefill, then decode until every row has emitted an EOS or max_new_tokens;
                 rows that have ended leave the batch (their cache rows are gathered away), so
                 a step costs in proportion to the rows still generating; optionally with fixed
                 shapes, each step replayed as a CUDA graph (gpt-fast style)

RL rollouts have long-tailed lengths: with a median a quarter of the longest, about 70 % of the
row-steps of a batch that runs until its longest row ends belong to rows that have already ended.
Dropping them changes no sample: every step draws one uniform for each row of the full batch, so a
row's random numbers do not depend on which other rows are still there.

The policy whose log-probs we report is pi(. | x) = softmax(logits / T) (T = 0 -> greedy
sampling, log-probs at T = 1), *before* top-k/top-p filtering, i.e. exactly what
`logits_to_logprobs` gives on a full forward pass at training time. top-k/top-p only change
which token is drawn, through `logits_to_probs`.

Masks are built from lengths, never by comparing token ids to a pad id, so a model whose pad
id equals its EOS id works.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

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


# Chunked log-probs: the LM head applied to a few rows of hidden states at a time, so that no
# (rows x tokens x vocab) float32 tensor ever exists. A chunk is at most CHUNK_ROWS rows (1024, the
# chunk of arm.token_entropy, so that at a small vocabulary the entropy is the same float32 sum as
# before) and at most CHUNK_VALUES logits (2^23: 32 MiB in float32; 55 rows of Qwen's 151,936).
# Why not larger: on CPU, glibc's malloc hands out blocks over 32 MiB as fresh pages each time, and
# faulting them in costs more than the arithmetic; one micro-batch of the bench/memory.py setup (8 x 256
# tokens) took 7.4-8.5 s with chunks of 27 or 55 rows, 9-12 s with 110 or 220, 19 s with full logits.
CHUNK_ROWS = 1024
CHUNK_VALUES = 1 << 23


def chunk_rows(vocab_size: int) -> int:
    """Rows of hidden states per chunk of the LM head for a vocabulary of this size."""
    return max(1, min(CHUNK_ROWS, CHUNK_VALUES // vocab_size))


def lm_head_rows(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """logits (m, V) = h (m, C) @ weight (V, C)^T, each row rounded as in a matmul of many rows: on the
    CPU kernels we measured, 1 to 3 rows take another code path that rounds differently, so fewer than
    MIN_ROWS rows (4, below) are padded with copies of the first, as the working batch of generate is."""
    m = h.shape[0]
    if 0 < m < MIN_ROWS:
        return torch.nn.functional.linear(torch.cat([h, h[:1].expand(MIN_ROWS - m, -1)]), weight)[:m]
    return torch.nn.functional.linear(h, weight)


class _ChunkedLogprobs(torch.autograd.Function):
    """log pi(token) = log_softmax(h W^T / T)[token] at chosen rows of h, chunk by chunk (see
    chunked_logprobs). Forward: per chunk, the logits are computed once and written into one buffer
    (rows of h x V, in the logits' dtype: float32, or bf16 under autocast), from which the chunk's
    log-softmax, log-probs and entropy are taken; nothing else vocabulary-sized outlives a chunk.
    Backward: the buffer becomes, chunk by chunk and in place, the gradient of the logits (the same
    float32 ops autograd runs for log_softmax + gather + division by T), then the LM head's two
    matmuls over the whole buffer. Rows that were not chosen stay zero there, so the weight gradient
    is the same sum, in the same order, as autograd's over full logits: bit-identical on CPU.
    The buffer is only allocated when a gradient is needed; backward can run once."""

    @staticmethod
    def forward(ctx, h, weight, rows, tokens, temperature, entropy, chunk, grad):
        # h (R, C) hidden states after the final norm; weight (V, C); rows (M,) long, tokens (M,) long;
        # grad: autograd records (ctx.needs_input_grad says True under torch.no_grad too)
        R, M = h.shape[0], rows.shape[0]
        t = temperature if temperature > 0 else 1.0
        buf = None  # (R, V) logits at `rows`, zeros elsewhere; allocated with the first chunk's dtype
        logp = torch.zeros(M, dtype=torch.float32, device=h.device)  # (M,)
        total = torch.zeros((), dtype=torch.float32, device=h.device)  # sum of the entropies
        for s in range(0, M, chunk):
            r = rows[s:s + chunk]  # (c,)
            logits = lm_head_rows(h[r], weight)  # (c, V)
            if grad:
                if buf is None:
                    buf = logits.new_zeros(R, logits.shape[1])
                buf[r] = logits
            z = logits.float() / t  # (c, V) float32, as logits_to_logprobs
            if tokens is not None:
                logp[s:s + chunk] = torch.log_softmax(z, -1).gather(-1, tokens[s:s + chunk, None]).squeeze(-1)
            if entropy:  # arm.token_entropy's arithmetic: sum of entr(softmax) per chunk
                total = total + torch.special.entr(torch.softmax(z, -1)).sum()
        ent = total / max(M, 1)
        ctx.mark_non_differentiable(ent)
        if grad:
            ctx.save_for_backward(h, weight, rows, tokens)
            ctx.buf, ctx.t, ctx.chunk = buf, t, chunk
        return logp, ent

    @staticmethod
    def backward(ctx, g, _g_ent):
        # g (M,): d loss / d log pi of each chosen row
        h, weight, rows, tokens = ctx.saved_tensors
        buf, t, chunk = ctx.buf, ctx.t, ctx.chunk
        if buf is None:
            if rows.numel():
                raise RuntimeError("chunked_logprobs: backward ran twice (the logits buffer became the gradient)")
            return torch.zeros_like(h), torch.zeros_like(weight), None, None, None, None, None, None
        ctx.buf = None
        for s in range(0, rows.shape[0], chunk):
            r = rows[s:s + chunk]
            ls = torch.log_softmax(buf[r].float() / t, -1)  # (c, V), recomputed: no matmul
            g_ls = torch.zeros_like(ls).scatter_add_(-1, tokens[s:s + chunk, None], g[s:s + chunk, None])
            g_z = torch._log_softmax_backward_data(g_ls, ls, -1, torch.float32) / t  # (c, V)
            buf[r] = g_z.to(buf.dtype)  # the logits' gradient, in their dtype (as autograd casts it)
        grad_h = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_h = (buf @ weight.to(buf.dtype)).to(h.dtype)  # (R, C)
        if ctx.needs_input_grad[1]:
            grad_w = (buf.t() @ h.to(buf.dtype)).to(weight.dtype)  # (V, C)
        return grad_h, grad_w, None, None, None, None, None, None


def chunked_logprobs(h: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor | None,
                     temperature: float = 1.0, *, entropy: bool = False,
                     chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log pi (M,) float32, mean entropy (0-dim float32)) of `tokens` (M,) predicted at `rows` (M,) of
    the hidden states h (R, C), with the LM head `weight` (V, C), pi = softmax(h W^T / T) (T == 0 -> 1).
    tokens None: the entropy alone (log pi is then zeros).

    The same numbers as logits_to_logprobs(h @ W^T, T)[rows].gather(tokens) and arm.token_entropy of
    those rows (bit-identical on CPU, rows in order, at most CHUNK_ROWS per chunk), without the full
    logits: the LM head runs only at `rows`, `chunk` of them at a time (default chunk_rows(V)). With a
    gradient, one (R, V) buffer holds the logits, then their gradient (see _ChunkedLogprobs); rows
    that are not chosen get none. The entropy (computed only if asked, else 0) has no gradient."""
    chunk = chunk or chunk_rows(weight.shape[0])
    grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _ChunkedLogprobs.apply(h, weight, rows, tokens, temperature, entropy, chunk, grad)


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


def sample(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator=None,
           u: torch.Tensor | None = None) -> torch.Tensor:
    """logits (B, V) -> tokens (B,). u (B, 1): the row's uniform draw in [0, 1), drawn here if None."""
    if temperature <= 0:
        return logits.argmax(-1)
    probs = logits_to_probs(logits, temperature, top_k, top_p)
    # inverse-CDF draw: one uniform per row (torch.multinomial draws one exponential per vocab entry)
    cdf = probs.cumsum(-1)  # (B, V)
    total = cdf[:, -1:]  # (B, 1), ~1
    if u is None:
        u = torch.rand(probs.shape[0], 1, generator=generator, device=probs.device)
    u = u * total
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
    Returns the hidden states after the final norm (P, T0, C) if all_logits (whose logits the caller
    takes where it needs them: prompt_logprobs_from_prefill) else logits (P, 1, V), the padded ids
    (P, T0) and the mask (P, T0)."""
    T0 = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (T0 - len(p)) + list(p) for p in prompts], dtype=torch.long).to(device)  # (P, T0)
    lengths = torch.tensor([len(p) for p in prompts]).to(device)
    mask = torch.arange(T0, device=device)[None, :] >= (T0 - lengths)[:, None]  # (P, T0), from lengths
    out = model(ids, mask, cache=cache, start=0, last_only=not all_logits, hidden_states=all_logits)
    return out, ids, mask


def prompt_logprobs_from_prefill(model, h, ids, mask, temperature):
    """log pi(q_t | q_<t) for t >= 1 of each left-padded prompt, left-aligned: (P, T0-1) and mask, from
    the prefill's hidden states h (P, T0, C); the LM head runs at the prompts' real positions only, a
    chunk at a time (chunked_logprobs: the same numbers as log_softmax of full logits)."""
    P, T0 = ids.shape
    real = mask[:, :-1] & mask[:, 1:]  # (P, T0-1): column j predicts the real token at column j + 1
    at = (torch.arange(P, device=ids.device)[:, None] * T0 + torch.arange(T0 - 1, device=ids.device))[real]  # (M,)
    lp = chunked_logprobs(h.flatten(0, 1), model.lm_head.weight, at, ids[:, 1:][real], temperature)[0]  # (M,)
    lp = lp.new_zeros(P, T0 - 1).masked_scatter(real, lp)  # (P, T0-1), 0 where padded
    n_pad = (~mask).sum(-1, keepdim=True)  # (P, 1)
    idx = (torch.arange(T0 - 1, device=ids.device)[None, :] + n_pad).clamp(max=T0 - 2)  # shift left by n_pad
    out_mask = torch.arange(T0 - 1, device=ids.device)[None, :] < (T0 - 1 - n_pad)  # (P, T0-1)
    return lp.gather(1, idx).masked_fill(~out_mask, 0.0), out_mask


def decode_one_token(model, tok, cache: KVCache, col: int, positions, key_mask):
    """Feed one token per row (B,) at cache column `col` (rotary positions (B, 1)); logits (B, V)."""
    return model(tok[:, None], key_mask, positions=positions, cache=cache, start=col)[:, -1]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype CUDA autocast computes in when it is on for this device, else None."""
    if device.type != "cuda":
        return None
    try:
        on = torch.is_autocast_enabled("cuda")
    except TypeError:  # torch < 2.4
        on = torch.is_autocast_enabled()
    if not on:
        return None
    return torch.get_autocast_dtype("cuda") if hasattr(torch, "get_autocast_dtype") else torch.get_autocast_gpu_dtype()


def kv_cache_dtype(device: torch.device, param_dtype: torch.dtype) -> torch.dtype:
    """The cache holds keys/values in the dtype attention computes in: the autocast dtype (bf16)
    when autocast is on for this device (half the memory of float32), else the parameters' dtype."""
    return autocast_dtype(device) or param_dtype


def static_decode_step(model, cache: KVCache, tok, col, positions, key_mask):
    """One decode step with fixed shapes, for CUDA graphs: tok (W,), col a 0-dim long tensor (the
    cache column), positions (W, 1), key_mask (W, S) True at every key to see (col included)."""
    return model(tok[:, None], key_mask, positions=positions, cache=cache, start=col)[:, -1]


def make_static_step(model, cache: KVCache, key_mask, W: int, device):
    """A decode function of fixed shapes (gpt-fast style) over `cache` (W rows): step(tok, col, positions)
    -> logits (W, V). Its inputs live in buffers that the step only copies into; on CUDA the step is
    captured once as a CUDA graph and replayed (no per-kernel launch cost); elsewhere it runs eagerly."""
    tok_buf = torch.zeros(W, dtype=torch.long, device=device)
    col_buf = torch.zeros((), dtype=torch.long, device=device)
    pos_buf = torch.zeros(W, 1, dtype=torch.long, device=device)
    run = lambda: static_decode_step(model, cache, tok_buf, col_buf, pos_buf, key_mask)
    graph = out = None

    def step(tok, col: int, positions):
        nonlocal graph, out
        tok_buf[: tok.shape[0]].copy_(tok)  # rows past tok's (padding of the bucket) keep stale tokens
        col_buf.fill_(col)
        pos_buf.copy_(positions)
        if device.type != "cuda":
            return run()
        if graph is None:  # first call: warm up on a side stream, then capture (the step is idempotent)
            ac = autocast_dtype(device)  # cast the weights inside the graph: no casts cached outside it
            autocast = torch.autocast("cuda", dtype=ac, cache_enabled=False) if ac else contextlib.nullcontext()
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side), autocast:
                run()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), autocast:
                out = run()
        graph.replay()
        return out

    return step


def bucket(n: int) -> int:
    """Static batch sizes are powers of two: at most log2(B) + 1 graphs per generate call."""
    return 1 << (n - 1).bit_length()


# Drop finished rows once no more than this share of the working batch is still generating: the
# batch shrinks geometrically, so the copies cost at most a few cache copies in all.
COMPACT_AT = 0.75
# ... but keep at least 4 rows (padding with copies of a live row). On the CPU kernels we measured,
# a matmul of 1 to 3 rows takes another code path that rounds differently; from 4 rows up, a row's
# result does not depend on the batch size, so dropping rows leaves every number bit-identical.
MIN_ROWS = 4


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
    drop_finished: bool = True,
    cuda_graph: bool = False,
    logits_processor: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
) -> Generation:
    """Sample `samples_per_prompt` completions for each prompt; rows are prompt-major (p * G + g).

    eos_token_ids: tokens that end a row; empty -> model.eos_token_ids (if the model has them).
    Prompt log-probs (if asked) use the same temperature as the sampled tokens.
    drop_finished: rows that have ended leave the batch (their cache rows are gathered away), so a
        decode step costs in proportion to the rows still generating. The result does not depend on
        it: each step draws one uniform for every row of the full batch, live or not, so row b always
        gets the same random number at step t (tests/test_sampler.py checks the equality).
    cuda_graph: decode with fixed shapes (static_decode_step: every cache column is a key, masked),
        the batch shrinking in powers of two; on CUDA each batch size is captured once as a graph.
        On CPU the same fixed-shape step runs eagerly (that is how the tests check it).
    The KV cache is kept in the dtype attention runs in (kv_cache_dtype: bf16 under CUDA autocast).
    logits_processor(logits, rows, step) -> logits: applied to the logits (b, V) of the rows still
        in the batch (rows (b,): their output indices) before the draw and the reported log-probs;
        step is the index of the token about to be drawn. E.g. bench/sampler.py forces row ends.
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

    cache = KVCache(cfg, P, S, kv_cache_dtype(device, dtype), device)
    out, ids, pmask = prefill(model, prompts, cache, device, all_logits=return_prompt_logprobs)  # each prompt once
    out_plp = out_pmask = None
    if return_prompt_logprobs:  # out: hidden states (P, T0, C); the last column's logits as in a full pass
        out_plp, out_pmask = prompt_logprobs_from_prefill(model, out, ids, pmask, temperature)
        last = lm_head_rows(out[:, -1], model.lm_head.weight)  # (P, V)
    else:  # out: logits (P, 1, V)
        last = out[:, -1]
    next_logits = last.repeat_interleave(G, dim=0)  # (B, V)
    if G > 1:
        cache = cache.repeat_rows(G)
    del out, last

    key_mask = torch.zeros(B, S, dtype=torch.bool, device=device)  # (B, S): keys written so far
    key_mask[:, :T0] = pmask.repeat_interleave(G, dim=0)
    pos = pmask.sum(-1).repeat_interleave(G, dim=0)[:, None]  # (B, 1) position of the first new token

    tokens = torch.zeros(B, max_new_tokens, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    # The working batch: W rows in the cache; the first len(rows) are real, rows[j] = its output row;
    # rows past len(rows) are padding (W >= MIN_ROWS; a power of two with cuda_graph), output unused.
    rows = torch.arange(B, device=device)
    W = B
    step = make_static_step(model, cache, key_mask, W, device) if cuda_graph else None
    n = 0
    for i in range(max_new_tokens):
        b = rows.shape[0]
        step_logits = next_logits[:b]
        if logits_processor is not None:
            step_logits = logits_processor(step_logits, rows, i)
        u = torch.rand(B, 1, generator=generator, device=device) if temperature > 0 else None  # one per row of B
        tok = sample(step_logits, temperature, top_k, top_p, u=None if u is None else u[rows])  # (b,)
        lp = logits_to_logprobs(step_logits, temperature).gather(-1, tok[:, None]).squeeze(-1)
        alive = ~finished[rows]
        tokens[rows, i] = tok
        logprobs[rows, i] = lp
        lengths[rows] += alive.long()
        live = alive & ~torch.isin(tok, eos_t)
        finished[rows] = ~live
        n = i + 1
        n_live = int(live.sum())  # note: a CPU-GPU sync point per step
        if n == max_new_tokens or n_live == 0:
            break
        W_new = max(bucket(n_live) if cuda_graph else n_live, min(MIN_ROWS, W))
        if drop_finished and W_new < W and (cuda_graph or n_live <= COMPACT_AT * W):
            keep = live.nonzero().squeeze(1)  # (n_live,) working rows that go on
            rows, tok, W = rows[keep], tok[keep], W_new
            keep = torch.cat([keep, keep[:1].expand(W - n_live)])  # padding rows copy a live one
            cache, key_mask, pos = cache.select_rows(keep), key_mask[keep], pos[keep]
            step = make_static_step(model, cache, key_mask, W, device) if cuda_graph else None
        if tok.shape[0] < W:  # padding rows are fed the first row's token
            tok = torch.cat([tok, tok[:1].expand(W - tok.shape[0])])
        col = T0 + i  # cache column of this token
        key_mask[:, col] = True
        if cuda_graph:
            next_logits = step(tok, col, pos + i)
        else:
            step_mask = key_mask[:, : col + 1] if padded else None  # None: no padding, nothing to mask
            next_logits = decode_one_token(model, tok, cache, col, pos + i, step_mask)

    mask = torch.arange(n, device=device)[None, :] < lengths[:, None]  # (B, N), from lengths
    tokens = tokens[:, :n].masked_fill(~mask, 0)
    logprobs = logprobs[:, :n].masked_fill(~mask, 0.0)
    return Generation(tokens, logprobs, mask, lengths, finished, out_plp, out_pmask)
