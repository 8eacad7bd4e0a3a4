"""Batched generation with a preallocated KV cache (gpt-fast style, for GRPO rollouts).

    left_pad     the prompts as one left-padded batch of ids and its mask, built from the lengths
    prefill      all P distinct prompts in one left-padded pass; the cache of each prompt is
                 then copied to its G sample rows (rows are prompt-major: row = p * G + g)
    decode_one_token  one token for every row: a (B, 1) forward into the cache; then `sample` draws
    generate     prefill, then decode until every row has emitted an EOS or max_new_tokens

Two speed-ups sit at the end of the file, apart from the story, and change no sample:
rows that have ended leave the batch (their cache rows are gathered away), so a step costs in
proportion to the rows still generating; and, optionally, each step has fixed shapes and is replayed
as a CUDA graph (gpt-fast style). RL rollouts have long-tailed lengths: with a median a quarter of the
longest, about 70 % of the row-steps of a batch that runs until its longest row ends belong to rows
that have already ended. Dropping them changes no sample: every step draws one uniform for each row of
the full batch, so a row's random numbers do not depend on which other rows are still there.

The policy whose log-probs we report is pi(. | x) = softmax(logits / T) (T = 0 -> greedy
sampling, log-probs at T = 1), *before* top-k/top-p filtering, i.e. exactly what
`logprobs.logits_to_logprobs` gives on a full forward pass at training time. top-k/top-p only change
which token is drawn, through `logits_to_probs`.

Masks are built from lengths, never by comparing token ids to a pad id, so a model whose pad
id equals its EOS id works.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch

from logprobs import MIN_ROWS, chunked_logprobs, lm_head_rows, logits_to_logprobs
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


# ----------------------------------------------------------------------------------------------
# drawing a token


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


# ----------------------------------------------------------------------------------------------
# the stages: prefill (with the prompt's log-probs), one decode step


def left_pad(prompts: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths as one batch: ids (P, T0) long, left-padded with id 0, and the mask
    (P, T0) bool, True at real tokens, built from the lengths (never from the pad id)."""
    T0 = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (T0 - len(p)) + list(p) for p in prompts], dtype=torch.long).to(device)  # (P, T0)
    lengths = torch.tensor([len(p) for p in prompts]).to(device)
    mask = torch.arange(T0, device=device)[None, :] >= (T0 - lengths)[:, None]  # (P, T0), from lengths
    return ids, mask


def prefill(model, prompts: list[list[int]], cache: KVCache, device, all_logits: bool = False):
    """Left-pad the prompts into one batch and run it through the model, filling `cache`.
    Returns the hidden states after the final norm (P, T0, C) if all_logits (whose logits the caller
    takes where it needs them: prompt_logprobs_from_prefill) else logits (P, 1, V), the padded ids
    (P, T0) and the mask (P, T0)."""
    ids, mask = left_pad(prompts, device)
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


def decode_one_token(model, tok, cache: KVCache, col, positions, key_mask):
    """Feed one token per row (B,) at cache column `col` (rotary positions (B, 1)); logits (B, V).
    col an int: the keys are the cache's columns [0, col], key_mask (B, col + 1) or None (no padding).
    col a 0-dim long tensor (fixed shapes, for CUDA graphs: make_static_step): every cache column is
    a key, key_mask (B, S) True at every key to see (col included)."""
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


# ----------------------------------------------------------------------------------------------
# generate


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
    cuda_graph: decode with fixed shapes (decode_one_token with a tensor column: every cache column is a
        key, masked), the batch shrinking in powers of two; on CUDA each batch size is captured once as a graph.
        On CPU the same fixed-shape step runs eagerly (that is how the tests check it).
    The KV cache is kept in the dtype attention runs in (kv_cache_dtype: bf16 under CUDA autocast).
    logits_processor(logits, rows, step) -> logits: applied to the logits (b, V) of the rows still
        in the batch (rows (b,): their output indices) before the draw and the reported log-probs;
        step is the index of the token about to be drawn. E.g. bench/sampler.py forces row ends.
    """
    _check_inputs(model, prompts, max_new_tokens, samples_per_prompt, temperature, top_p, top_k)
    device = next(model.parameters()).device
    eos = list(eos_token_ids) or list(getattr(model, "eos_token_ids", []))
    eos_t = torch.tensor(eos, dtype=torch.long, device=device)
    P, G = len(prompts), samples_per_prompt
    B = P * G
    T0 = max(len(p) for p in prompts)
    padded = any(len(p) != T0 for p in prompts)
    S = T0 + max_new_tokens  # cache columns: padded prompt, then one per generated token

    # prefill: each distinct prompt once, then its cache rows are copied to its G sample rows
    cache = KVCache(model.config, P, S, kv_cache_dtype(device, next(model.parameters()).dtype), device)
    out, ids, pmask = prefill(model, prompts, cache, device, all_logits=return_prompt_logprobs)
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
    batch = WorkingBatch(torch.arange(B, device=device), cache, key_mask, pos)  # all B rows (see WorkingBatch)
    if cuda_graph:
        batch.step = make_static_step(model, cache, key_mask, B, device)

    # decode: draw a token for every row, record it, feed it back; until every row has ended
    tokens = torch.zeros(B, max_new_tokens, dtype=torch.long, device=device)
    logprobs = torch.zeros(B, max_new_tokens, dtype=torch.float32, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    n = 0
    for i in range(max_new_tokens):
        rows = batch.rows  # (b,) the output row of each row in the batch (b = B unless rows were dropped)
        step_logits = next_logits[: rows.shape[0]]  # (b, V)
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
        if drop_finished:  # rows that have ended leave the batch (a speed-up, below)
            batch, tok = drop_finished_rows(model, batch, tok, live, n_live, cuda_graph)
        tok = batch.pad(tok)  # (W,)
        col = T0 + i  # cache column of this token
        batch.key_mask[:, col] = True
        if cuda_graph:  # the fixed-shape step, replayed as a CUDA graph (below)
            next_logits = batch.step(tok, col, batch.pos + i)
        else:
            step_mask = batch.key_mask[:, : col + 1] if padded else None  # None: no padding, nothing to mask
            next_logits = decode_one_token(model, tok, batch.cache, col, batch.pos + i, step_mask)  # (W, V)

    mask = torch.arange(n, device=device)[None, :] < lengths[:, None]  # (B, N), from lengths
    tokens = tokens[:, :n].masked_fill(~mask, 0)
    logprobs = logprobs[:, :n].masked_fill(~mask, 0.0)
    return Generation(tokens, logprobs, mask, lengths, finished, out_plp, out_pmask)


# ----------------------------------------------------------------------------------------------
# Speed-ups a reader may skip: neither changes a sample (tests/test_sampler.py checks both).
#   dropping finished rows   the working batch shrinks as rows end (WorkingBatch, drop_finished_rows)
#   fixed-shape steps        with cuda_graph, each step has the same shapes, the batch shrinking in
#                            powers of two, so a CUDA graph replays it (make_static_step, bucket)


@dataclass
class WorkingBatch:
    """The rows the decode loop runs: W rows of cache. The first len(rows) are real, rows[j] = the output
    row of working row j; rows past len(rows) are padding (copies of a live row), their output unused
    (W >= MIN_ROWS once rows have been dropped; a power of two with cuda_graph)."""
    rows: torch.Tensor  # (b,) long
    cache: KVCache  # W rows
    key_mask: torch.Tensor  # (W, S) bool: the cache columns written so far
    pos: torch.Tensor  # (W, 1) rotary position of the first generated token
    step: Callable | None = None  # with cuda_graph: make_static_step over these W rows

    def pad(self, tok: torch.Tensor) -> torch.Tensor:
        """tokens (b,) -> (W,): padding rows are fed the first row's token."""
        W = self.key_mask.shape[0]
        if tok.shape[0] < W:
            tok = torch.cat([tok, tok[:1].expand(W - tok.shape[0])])
        return tok


# Drop finished rows once no more than this share of the working batch is still generating: the
# batch shrinks geometrically, so the copies cost at most a few cache copies in all.
COMPACT_AT = 0.75


def drop_finished_rows(model, batch: WorkingBatch, tok, live, n_live: int, cuda_graph: bool):
    """The working batch without the rows that have ended, once few enough are live (live (b,) bool,
    n_live of them), and the tokens (b,) of the rows that stay; else the same batch and tokens.
    At least MIN_ROWS rows stay (logprobs.MIN_ROWS: padding with copies of a live row), so every number
    stays bit-identical; with cuda_graph the width is a power of two and gets its own static step."""
    W = batch.key_mask.shape[0]
    W_new = max(bucket(n_live) if cuda_graph else n_live, min(MIN_ROWS, W))
    if W_new >= W or not (cuda_graph or n_live <= COMPACT_AT * W):
        return batch, tok
    keep = live.nonzero().squeeze(1)  # (n_live,) working rows that go on
    rows, tok = batch.rows[keep], tok[keep]
    keep = torch.cat([keep, keep[:1].expand(W_new - n_live)])  # padding rows copy a live one
    cache, key_mask, pos = batch.cache.select_rows(keep), batch.key_mask[keep], batch.pos[keep]
    step = make_static_step(model, cache, key_mask, W_new, key_mask.device) if cuda_graph else None
    return WorkingBatch(rows, cache, key_mask, pos, step), tok


def make_static_step(model, cache: KVCache, key_mask, W: int, device):
    """A decode function of fixed shapes (gpt-fast style) over `cache` (W rows): step(tok, col, positions)
    -> logits (W, V). Its inputs live in buffers that the step only copies into; on CUDA the step is
    captured once as a CUDA graph and replayed (no per-kernel launch cost); elsewhere it runs eagerly."""
    tok_buf = torch.zeros(W, dtype=torch.long, device=device)
    col_buf = torch.zeros((), dtype=torch.long, device=device)
    pos_buf = torch.zeros(W, 1, dtype=torch.long, device=device)
    run = lambda: decode_one_token(model, tok_buf, cache, col_buf, pos_buf, key_mask)
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
