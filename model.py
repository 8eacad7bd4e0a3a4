"""One readable decoder-only transformer, in the layout of Hugging Face checkpoints (hf.py reads and writes them).

Families: Llama (incl. Llama-3 `rope_scaling` of type "llama3"; SmolLM2 is Llama), Mistral
(without sliding window), Qwen2/Qwen2.5 (q/k/v biases), Qwen3 (q/k RMSNorm, explicit head_dim).
All of them are the same block:

    h = x + o_proj(attn(rope(q_norm(q_proj(rms(x)))), rope(k_norm(k_proj(rms(x)))), v_proj(rms(x))))
    y = h + down_proj(silu(gate_proj(rms(h))) * up_proj(rms(h)))

Our parameter names are the Hugging Face names without the leading "model.", so a checkpoint
loads with a dictionary rename (hf.load_model) and a checkpoint we save loads in transformers/vLLM
unchanged (hf.save_model).

Padding: a batch may be left- or right-padded; positions are cumsum(attention_mask) - 1, and
keys at padded positions are masked out, so a padded row gets the same logits as the row alone.
The KV cache (for the sampler) is a preallocated `KVCache`; `forward(..., cache=, start=)`
writes the new keys/values at columns [start, start + T) and attends over [0, start + T).
For training, `forward(..., hidden_states=True)` stops before the LM head (its caller applies it
only where it needs logits: logprobs.chunked_logprobs) and `grad_checkpoint=True` recomputes each
decoder layer in the backward pass instead of keeping its activations.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


# ----------------------------------------------------------------------------------------------
# config


def as_id_list(x) -> list[int]:
    """An eos_token_id as config.json writes it (null, an int or a list of ints) -> list of ints."""
    if x is None:
        return []
    if isinstance(x, int) and not isinstance(x, bool):
        return [x]
    if isinstance(x, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in x):
        return list(x)
    raise ValueError(f"eos_token_id must be an int or a list of ints, got {x!r}")


@dataclass
class ModelConfig:
    """The fields of a Hugging Face config.json that the model uses (hf.config_from_hf_dict reads one).
    A field that breaks the model is a ValueError "config: <field> ..." (hf.py names the file)."""

    model_type: str = "llama"
    vocab_size: int = 256
    hidden_size: int = 64
    intermediate_size: int = 172
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None  # None -> num_attention_heads (no GQA)
    head_dim: int | None = None  # None -> hidden_size // num_attention_heads
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # None or {"rope_type": "llama3", factor, low/high_freq_factor, original_max_position_embeddings}
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # bias on q/k/v (always True for qwen2); llama/qwen3 also put one on o_proj
    qk_norm: bool = False  # RMSNorm on each head of q and k before rotary (qwen3)
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    torch_dtype: str = "float32"  # dtype the weights are stored in (written to config.json)

    def __post_init__(self):
        # the one place where derivable fields are derived
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.model_type == "qwen2":
            self.attention_bias = True
        if self.model_type == "qwen3":
            self.qk_norm = True
        self.validate()

    def validate(self) -> None:
        def bad(msg):
            raise ValueError(f"config: {msg}")

        if self.model_type not in SUPPORTED_MODEL_TYPES:
            bad(f"model_type {self.model_type!r} is not supported (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                bad(f"{name} must be a positive integer, got {v!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            bad(f"num_attention_heads {self.num_attention_heads} is not a multiple of num_key_value_heads {self.num_key_value_heads}")
        for name in ("bos_token_id", "pad_token_id"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
                bad(f"{name} must be an integer or null, got {v!r}")
        try:
            as_id_list(self.eos_token_id)
        except ValueError as e:
            bad(str(e))
        if self.head_dim % 2:
            bad(f"head_dim {self.head_dim} must be even for rotary embeddings")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            if kind not in ("default", "llama3"):
                bad(f"rope_scaling type {kind!r} is not supported (supported: default, llama3)")
            if kind == "llama3":
                for k in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
                    if k not in self.rope_scaling:
                        bad(f"rope_scaling of type llama3 lacks {k!r}")


# ----------------------------------------------------------------------------------------------
# the model


class RMSNorm(nn.Module):
    """y = w * x / sqrt(mean(x^2) + eps), computed in float32 like the reference implementations."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """inv_freq_i = theta^(-2i/d), i < d/2 (float32), with Llama-3 frequency scaling when configured."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
    s = cfg.rope_scaling
    if s is None or s.get("rope_type", s.get("type")) == "default":
        return inv_freq
    # llama3: long wavelengths slowed down by `factor`, short ones kept, a smooth ramp in between
    factor, lo, hi = s["factor"], s["low_freq_factor"], s["high_freq_factor"]
    old_len = s["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > old_len / lo, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - lo) / (hi - lo)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old_len / hi) & ~(wavelen > old_len / lo)
    return torch.where(medium, smoothed, scaled)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x (B, nh, T, hd); cos/sin (B, 1, T, hd)  ("rotate half" layout of HF checkpoints)
    return x * cos + rotate_half(x) * sin


def attention_bias(attention_mask, B: int, start: int | torch.Tensor, T: int, rep: int, dtype,
                   device) -> torch.Tensor | None:
    """Additive attention mask (B, 1, rep*T, S), S = start + T: 0 where the query at column start+t
    may see key column j (j <= start+t and key j is a real token), -inf elsewhere; repeated `rep`
    times along the query axis for the grouped-query layout of Attention.forward. A query always
    sees itself, so padded queries get finite (ignored) outputs, never NaN.
    None when there is nothing to mask: no padding and a single query (a decode step).
    A tensor `start` (a fixed-shape decode step, T = 1): every cache column is a key and the mask
    (B, S), True up to and including this token's column, is the whole rule."""
    if isinstance(start, torch.Tensor):
        return torch.zeros(B, 1, rep, attention_mask.shape[1], dtype=dtype, device=device).masked_fill_(
            ~attention_mask.bool()[:, None, None, :], float("-inf"))
    if attention_mask is None:
        if T == 1:
            return None
        attention_mask = torch.ones(B, start + T, dtype=torch.bool, device=device)
    q_col = torch.arange(start, start + T, device=device)[:, None]  # (T, 1)
    k_col = torch.arange(start + T, device=device)[None, :]  # (1, S)
    allowed = ((k_col <= q_col) & attention_mask.bool()[:, None, :]) | (k_col == q_col)  # (B, T, S)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
    return bias[:, None].repeat(1, 1, rep, 1)  # (B, 1, rep*T, S)


def decode_attention(q, k, v, attn_bias) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) + bias) v as three plain ops, for short queries (a decode step).
    q (B, n_kv, R, hd), k/v (B, n_kv, S, hd), bias (B, 1, R, S) | None -> (B, n_kv, R, hd).
    On CPU at small sizes SDPA's fused kernel costs ~1.3x these (measured, batch 64, one thread).
    The softmax is taken in float32, as SDPA does for half-precision inputs."""
    att = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, n_kv, R, S)
    if attn_bias is not None:
        att = att + attn_bias
    return att.float().softmax(-1).to(v.dtype) @ v


class KVCache:
    """Preallocated keys/values for all layers: k, v (L, B, n_kv_heads, max_len, head_dim)."""

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, dtype: torch.dtype, device):
        shape = (cfg.num_hidden_layers, batch, cfg.num_key_value_heads, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)

    def update(self, layer: int, start: int | torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        """Write k/v (B, n_kv, T, hd) at columns [start, start+T); return all keys/values so far.
        A tensor `start` (static shapes, for CUDA graphs): write there and return every column."""
        if isinstance(start, torch.Tensor):
            cols = start.view(1) + torch.arange(k.shape[2], device=start.device)
            self.k[layer].index_copy_(2, cols, k.to(self.k.dtype))
            self.v[layer].index_copy_(2, cols, v.to(self.v.dtype))
            return self.k[layer], self.v[layer]
        end = start + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def repeat_rows(self, n: int) -> "KVCache":
        """Row b becomes rows b*n .. b*n+n-1 (prompt-major), e.g. one prefilled prompt -> its G samples."""
        out = copy.copy(self)
        out.k, out.v = self.k.repeat_interleave(n, dim=1), self.v.repeat_interleave(n, dim=1)
        return out

    def select_rows(self, idx: torch.Tensor) -> "KVCache":
        """A new cache holding rows idx (B',) of this one, e.g. the rows still generating."""
        out = copy.copy(self)
        out.k, out.v = self.k[:, idx], self.v[:, idx]
        return out


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv, self.hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        o_bias = cfg.attention_bias and cfg.model_type != "qwen2"  # qwen2: q/k/v biases only
        self.q_proj = nn.Linear(cfg.hidden_size, self.n_head * self.hd, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.hd, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(cfg.hidden_size, self.n_kv * self.hd, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(self.n_head * self.hd, cfg.hidden_size, bias=o_bias)
        if cfg.qk_norm:
            self.q_norm = RMSNorm(self.hd, cfg.rms_norm_eps)
            self.k_norm = RMSNorm(self.hd, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, attn_bias, cache: KVCache | None, layer: int, start: int):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.hd)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)  # (B, n_kv, T, hd)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q.transpose(1, 2), cos, sin)  # (B, nh, T, hd)
        k = apply_rope(k.transpose(1, 2), cos, sin)  # (B, n_kv, T, hd)
        if cache is not None:
            k, v = cache.update(layer, start, k, v)  # (B, n_kv, start+T, hd)
        if self.n_kv != self.n_head:
            # grouped-query attention: query heads kv*rep .. kv*rep+rep-1 share kv head `kv`; fold them
            # into the query-length axis so each kv head (the cache) is read once, without copies
            q = q.reshape(B, self.n_kv, self.n_head // self.n_kv * T, self.hd)  # row r*T + t: head kv*rep+r, token t
        if T == 1 and q.device.type == "cpu":  # a CPU decode step: plain matmuls beat SDPA's CPU kernel here
            y = decode_attention(q, k, v, attn_bias)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias)  # (B, n_kv, rep*T, hd)
        y = y.reshape(B, self.n_head, T, self.hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_head * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, attn_bias, cache, layer, start):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_bias, cache, layer, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.eos_token_ids: list[int] = as_id_list(cfg.eos_token_id)  # hf.load_model: those of every file
        self._rope_table: torch.Tensor | None = None  # float32 cos/sin (2, max_pos, hd), per device (never cast to bf16)
        if not any(p.is_meta for p in self.parameters()):
            self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def rope(self, positions: torch.Tensor, dtype: torch.dtype, n_pos: int):
        """cos, sin (B, 1, T, head_dim) for integer positions (B, T) < n_pos; angles in float32.
        cos/sin of pos * inv_freq are tabled once per device (for max(n_pos, max_position_embeddings)
        positions), so a decode step only indexes the table."""
        table = self._rope_table
        if table is None or table.device != positions.device or table.shape[1] < n_pos:
            pos = torch.arange(max(n_pos, self.config.max_position_embeddings), device=positions.device).float()
            freqs = pos[:, None] * rope_inv_freq(self.config).to(positions.device)  # (n, hd/2)
            angles = torch.cat((freqs, freqs), dim=-1)  # (n, hd)
            table = self._rope_table = torch.stack((angles.cos(), angles.sin()))  # (2, n, hd)
        cos, sin = table[:, positions].unsqueeze(2).to(dtype)  # each (B, 1, T, hd)
        return cos, sin

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        start: int | torch.Tensor = 0,
        last_only: bool = False,
        hidden_states: bool = False,
        grad_checkpoint: bool = False,
    ) -> torch.Tensor:
        """input_ids (B, T) -> logits (B, T, vocab), or (B, 1, vocab) if last_only.

        hidden_states: return the hidden states after the final norm instead, (B, T, C) (or (B, 1, C)),
        for a caller that applies the LM head (`lm_head.weight`) only where it needs logits
        (chunked_logprobs, below): the logits of every position would be (B, T, vocab).
        grad_checkpoint: when autograd records (training), keep only each decoder layer's input and
        recompute the layer's activations in the backward pass (torch.utils.checkpoint, non-reentrant):
        about one more forward pass of time for the activations of all layers but one. Not with a cache.

        attention_mask (B, start+T), 1 = real token, covers the cached columns too. positions
        (B, T) default to cumsum(attention_mask) - 1. With `cache`, the new keys/values go to
        columns [start, start+T) and queries attend over columns [0, start+T).
        Static shapes (a decode step that a CUDA graph can replay): `start` a 0-dim long tensor, T = 1,
        positions given and attention_mask (B, cache columns) True exactly at the keys to see,
        this token's column included; every shape is then the same at every step.
        """
        B, T = input_ids.shape
        static = isinstance(start, torch.Tensor)  # a decode step of fixed shapes (CUDA graphs), see below
        S = cache.k.shape[3] if static else start + T  # number of key columns
        if attention_mask is not None and tuple(attention_mask.shape) != (B, S):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(B, S)}")
        if static and (T != 1 or positions is None or attention_mask is None):
            raise ValueError("a tensor `start` is for one-token decode steps with positions and a full-width attention_mask")
        if positions is None:
            if attention_mask is None:
                positions = torch.arange(start, S, device=input_ids.device).expand(B, T)
            else:
                positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, start:]  # (B, T)
        rep = self.config.num_attention_heads // self.config.num_key_value_heads
        x = self.embed_tokens(input_ids)  # (B, T, C)
        attn_bias = attention_bias(attention_mask, B, start, T, rep, x.dtype, x.device)  # (B, 1, rep*T, S) | None
        cos, sin = self.rope(positions, x.dtype, S)
        recompute = grad_checkpoint and cache is None and torch.is_grad_enabled()
        for i, layer in enumerate(self.layers):
            if recompute:
                x = checkpoint(layer, x, cos, sin, attn_bias, None, i, start, use_reentrant=False)
            else:
                x = layer(x, cos, sin, attn_bias, cache, i, start)
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)  # (B, T, C)
        return x if hidden_states else self.lm_head(x)  # (B, T, C) or (B, T, vocab)
