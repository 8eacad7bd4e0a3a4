"""Log-probabilities from the LM head: a policy's log pi, computed the same way wherever it is needed.

    logits_to_logprobs   log pi = log_softmax(logits / T) in float32: the sampler's pi_old, on full logits
    chunked_logprobs     the same numbers from hidden states, the LM head applied a chunk of rows at a
                         time (a custom autograd function: no rows x vocabulary float32 tensor is kept);
                         the sampler's prompt log-probs (c(q)) and the training loss use it
    response_logprobs    log pi of the sampled response tokens, re-read by a policy in one forward pass
                         over prompt + response: the training loss's log-probs and the evaluation's
                         entropy (train.sampled_logprobs calls it)

The policy is pi(. | x) = softmax(logits / T) at the sampling temperature T, *before* top-k/top-p
filtering: the tokens are drawn from the filtered distribution, but the ratio pi / pi_old of the loss
compares the same unfiltered distribution at training and at sampling time.
"""
from __future__ import annotations

import torch

from arm import token_entropy




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


# On the CPU kernels we measured, a matmul of 1 to 3 rows takes another code path that rounds
# differently; from 4 rows up, a row's result does not depend on the batch size. So the LM head is never
# applied to fewer than MIN_ROWS rows, and sampler.generate keeps at least MIN_ROWS rows in its working
# batch: dropping finished rows then leaves every number bit-identical.
MIN_ROWS = 4


def lm_head_rows(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """logits (m, V) = h (m, C) @ weight (V, C)^T, each row rounded as in a matmul of many rows: fewer
    than MIN_ROWS rows are padded with copies of the first, as the working batch of sampler.generate is."""
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


def response_logprobs(model, input_ids: torch.Tensor, attn_mask: torch.Tensor, tokens: torch.Tensor,
                      mask: torch.Tensor, T0: int, temperature: float, *, chunked: bool = True,
                      grad_checkpoint: bool = False, entropy: bool = False,
                      logprobs: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(log pi of the response tokens (b, n), their mean entropy (0-dim, no gradient) or None) of a batch
    of prompt + response rows, input_ids/attn_mask (b, T0 + n) left-padded prompt then response, tokens
    and mask (b, n) the response part (token t at column T0 + t, predicted from column T0 - 1 + t; the
    picture is in train.Rollout). log pi is 0 after a row's end; the entropy is over the valid tokens.
    Two paths, with the same numbers (bit-identical on CPU; tests/test_logprobs.py):
      chunked (default)  the model returns hidden states (b, T0 + n, C); the LM head runs only at the
                         valid response positions, a chunk at a time (chunked_logprobs): no (b, n, V)
                         float32 log-softmax, no float32 copy for the entropy
      chunked=False      full logits (b, T0 + n, V), then log_softmax of the response part: the plain
                         path (--no-chunk-logprobs), kept to compare against (bench/memory.py, the tests)"""
    b, T = input_ids.shape
    n = T - T0
    if not chunked:
        logits = model(input_ids, attn_mask, grad_checkpoint=grad_checkpoint)[:, T0 - 1: T0 - 1 + n]  # (b, n, V)
        # the entropy first, while only the logits exist: its float32 copies are gone before the
        # log-softmax and its gradients are made, so the peak memory stays the backward pass's
        ent = token_entropy(logits.detach().float() / temperature, mask) if entropy else None
        logp = logits_to_logprobs(logits, temperature).gather(-1, tokens[..., None]).squeeze(-1) if logprobs else None
        return logp, ent
    h = model(input_ids, attn_mask, hidden_states=True, grad_checkpoint=grad_checkpoint)  # (b, T0 + n, C)
    # the row of h.flatten(0, 1) that predicts each valid response token: column T0 - 1 + t of its row
    device = input_ids.device
    at = (torch.arange(b, device=device)[:, None] * T + T0 - 1 + torch.arange(n, device=device))[mask]  # (M,)
    lp, ent = chunked_logprobs(h.flatten(0, 1), model.lm_head.weight, at, tokens[mask] if logprobs else None,
                               temperature, entropy=entropy)  # (M,), 0-dim
    logp = lp.new_zeros(b, n).masked_scatter(mask, lp) if logprobs else None  # (b, n)
    return logp, ent if entropy else None
