"""One readable decoder-only transformer that loads Hugging Face checkpoints.

Families: Llama (incl. Llama-3 `rope_scaling` of type "llama3"; SmolLM2 is Llama), Mistral
(without sliding window), Qwen2/Qwen2.5 (q/k/v biases), Qwen3 (q/k RMSNorm, explicit head_dim).
All of them are the same block:

    h = x + o_proj(attn(rope(q_norm(q_proj(rms(x)))), rope(k_norm(k_proj(rms(x)))), v_proj(rms(x))))
    y = h + down_proj(silu(gate_proj(rms(h))) * up_proj(rms(h)))

Our parameter names are the Hugging Face names without the leading "model.", so a checkpoint
loads with a dictionary rename and a checkpoint we save loads in transformers/vLLM unchanged.

Padding: a batch may be left- or right-padded; positions are cumsum(attention_mask) - 1, and
keys at padded positions are masked out, so a padded row gets the same logits as the row alone.
The KV cache (for the sampler) is a preallocated `KVCache`; `forward(..., cache=, start=)`
writes the new keys/values at columns [start, start + T) and attends over [0, start + T).
For training, `forward(..., hidden_states=True)` stops before the LM head (its caller applies it
only where it needs logits: sampler.chunked_logprobs) and `grad_checkpoint=True` recomputes each
decoder layer in the backward pass instead of keeping its activations.
"""
from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from safetensors import safe_open
from safetensors.torch import save_file

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class ModelLoadError(ValueError):
    """A checkpoint folder or config we cannot load; the message is one line naming the file/field."""


# ----------------------------------------------------------------------------------------------
# config


@dataclass
class ModelConfig:
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
            raise ModelLoadError(f"config: {msg}")

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
            _as_id_list(self.eos_token_id)
        except ModelLoadError as e:
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

    @classmethod
    def from_hf_dict(cls, d: dict) -> "ModelConfig":
        """Read a Hugging Face config.json dict (transformers 4.x or 5.x layout); clear errors."""
        if not isinstance(d, dict):
            raise ModelLoadError("config: expected a JSON object")
        mt = d.get("model_type")
        if mt not in SUPPORTED_MODEL_TYPES:
            raise ModelLoadError(f"config: model_type {mt!r} is not supported (supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
        for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"):
            if k not in d:
                raise ModelLoadError(f"config: missing field {k!r}")
        # fields that change the computation in ways we do not implement
        if d.get("hidden_act", "silu") != "silu":
            raise ModelLoadError(f"config: hidden_act {d['hidden_act']!r} is not supported (only silu)")
        if d.get("mlp_bias", False):
            raise ModelLoadError("config: mlp_bias=true is not supported")
        if d.get("use_sliding_window", False):
            raise ModelLoadError("config: use_sliding_window=true (sliding-window attention) is not supported")
        if mt == "mistral" and d.get("sliding_window") is not None and d["sliding_window"] < d.get("max_position_embeddings", 0):
            raise ModelLoadError(f"config: sliding_window={d['sliding_window']} (sliding-window attention) is not supported")
        lt = [t for t in d.get("layer_types") or [] if t != "full_attention"]
        if lt:
            raise ModelLoadError(f"config: layer_types {lt[0]!r} is not supported (only full_attention)")
        # rope: transformers 4.x has rope_theta + rope_scaling, 5.x has rope_parameters
        rp = d.get("rope_parameters")
        scaling = d.get("rope_scaling")
        theta = d.get("rope_theta")
        if isinstance(rp, dict):
            theta = rp.get("rope_theta", theta)
            if rp.get("rope_type", "default") != "default":
                scaling = {k: v for k, v in rp.items() if k != "rope_theta"}
        if isinstance(scaling, dict) and scaling.get("rope_type", scaling.get("type")) == "default":
            scaling = None
        if scaling is not None and not isinstance(scaling, dict):
            raise ModelLoadError(f"config: rope_scaling must be an object or null, got {scaling!r}")
        known = {f.name for f in fields(cls)}
        kw = {k: d[k] for k in known if k in d and k not in ("rope_scaling", "rope_theta", "torch_dtype")}
        kw["rope_theta"] = float(theta if theta is not None else 10000.0)
        kw["rope_scaling"] = dict(scaling) if scaling else None
        dt = d.get("torch_dtype") or d.get("dtype") or "float32"
        kw["torch_dtype"] = str(dt).replace("torch.", "")
        if kw.get("head_dim") is None:
            kw.pop("head_dim", None)
        if kw.get("num_key_value_heads") is None:
            kw.pop("num_key_value_heads", None)
        return cls(**kw)

    def to_hf_dict(self) -> dict:
        """A config.json that transformers (4.x and 5.x) and vLLM load unchanged."""
        d = asdict(self)
        d.pop("qk_norm")  # implied by model_type qwen3
        if self.model_type == "qwen2":
            d.pop("attention_bias")  # implied by model_type qwen2
        d["architectures"] = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                               "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[self.model_type]]
        d["hidden_act"] = "silu"
        if self.model_type == "mistral":
            d["sliding_window"] = None
        if self.model_type in ("qwen2", "qwen3"):
            d["use_sliding_window"] = False
        # both rope layouts: 4.x reads rope_theta/rope_scaling, 5.x reads rope_parameters
        d["rope_parameters"] = {"rope_type": "default", **(self.rope_scaling or {}), "rope_theta": self.rope_theta}
        d["rope_parameters"].pop("type", None)
        return d


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
        self.eos_token_ids: list[int] = _as_id_list(cfg.eos_token_id)
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
        (sampler.chunked_logprobs): the logits of every position would be (B, T, vocab).
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


# ----------------------------------------------------------------------------------------------
# loading and saving Hugging Face folders


def _as_id_list(x) -> list[int]:
    if x is None:
        return []
    if isinstance(x, int) and not isinstance(x, bool):
        return [x]
    if isinstance(x, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in x):
        return list(x)
    raise ModelLoadError(f"eos_token_id must be an int or a list of ints, got {x!r}")


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except OSError as e:
        raise ModelLoadError(f"{path}: cannot read ({e.strerror})") from None
    if not isinstance(d, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


def _model_dir(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"{p}: model folder not found")
    if not p.is_dir():
        raise ModelLoadError(f"{p}: not a folder (expected a Hugging Face model folder)")
    return p


def load_config(path) -> ModelConfig:
    p = _model_dir(path)
    d = _read_json(p / "config.json")
    try:
        return ModelConfig.from_hf_dict(d)
    except ModelLoadError as e:
        raise ModelLoadError(f"{p / 'config.json'}: {str(e).removeprefix('config: ')}") from None
    except (TypeError, ValueError) as e:  # e.g. a field of the wrong type reaching the dataclass
        raise ModelLoadError(f"{p / 'config.json'}: {e}") from None


def _eos_token_ids(p: Path, cfg: ModelConfig) -> list[int]:
    """Union of EOS ids from generation_config.json, config.json and tokenizer_config.json."""
    ids: list[int] = []
    if (p / "generation_config.json").exists():
        ids += _as_id_list(_read_json(p / "generation_config.json").get("eos_token_id"))
    ids += _as_id_list(cfg.eos_token_id)
    if (p / "tokenizer_config.json").exists() and (p / "tokenizer.json").exists():
        tok = _read_json(p / "tokenizer_config.json").get("eos_token")
        if isinstance(tok, dict):
            tok = tok.get("content")
        if isinstance(tok, str):
            tid = load_tokenizer(p).token_to_id(tok)
            if tid is not None:
                ids.append(tid)
    return list(dict.fromkeys(ids))


def _hf_name(name: str) -> str:
    return name if name.startswith("lm_head.") else "model." + name


def _read_state_dict(p: Path) -> dict[str, torch.Tensor]:
    """All tensors of model.safetensors, or of the shards listed in model.safetensors.index.json."""
    single, index = p / "model.safetensors", p / "model.safetensors.index.json"
    if single.exists():
        files = {single: None}
    elif index.exists():
        wm = _read_json(index).get("weight_map")
        if not isinstance(wm, dict):
            raise ModelLoadError(f"{index}: missing 'weight_map'")
        files = {}
        for name, shard in wm.items():
            files.setdefault(p / shard, set()).add(name)
    else:
        raise ModelLoadError(f"{p}: no model.safetensors or model.safetensors.index.json")
    sd = {}
    for f, names in files.items():
        if not f.exists():
            raise ModelLoadError(f"{f}: weight file not found")
        try:
            with safe_open(str(f), framework="pt") as st:
                for name in st.keys():
                    if names is None or name in names:
                        sd[name] = st.get_tensor(name)
        except ModelLoadError:
            raise
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise ModelLoadError(f"{f}: cannot read safetensors ({str(e).splitlines()[0]})") from None
    return sd


def load_model(path, device="cpu", dtype: torch.dtype | None = None) -> Transformer:
    """Load a Hugging Face folder. dtype None -> float32 on CPU, bfloat16 on CUDA.

    Sets model.eos_token_ids (list[int]) from generation_config.json, config.json and
    tokenizer_config.json. Errors are ModelLoadError with one line naming the file/tensor.
    """
    p = _model_dir(path)
    cfg = load_config(p)
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    sd = _read_state_dict(p)
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = {_hf_name(n): t for n, t in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        expected.pop("lm_head.weight")
        sd.pop("lm_head.weight", None)  # some tied checkpoints store a copy; the embedding wins
    for name in list(sd):
        if name.endswith("rotary_emb.inv_freq"):  # old checkpoints saved this buffer
            del sd[name]
    for name, t in expected.items():
        if name not in sd:
            raise ModelLoadError(f"{p}: tensor {name!r} missing from the checkpoint")
        if tuple(sd[name].shape) != tuple(t.shape):
            raise ModelLoadError(f"{p}: tensor {name!r} has shape {tuple(sd[name].shape)} but the config implies {tuple(t.shape)}")
    extra = sorted(set(sd) - set(expected))
    if extra:
        raise ModelLoadError(f"{p}: unexpected tensor {extra[0]!r} (and {len(extra) - 1} more): the config does not use it")
    own = {n.removeprefix("model."): t.to(device=device, dtype=dtype) for n, t in sd.items()}
    model.load_state_dict(own, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.embed_tokens.weight
    model.config.torch_dtype = str(dtype).removeprefix("torch.")
    model.eos_token_ids = _eos_token_ids(p, cfg)
    return model


def load_tokenizer(path):
    """tokenizers.Tokenizer from <path>/tokenizer.json."""
    from tokenizers import Tokenizer

    p = _model_dir(path)
    f = p / "tokenizer.json"
    if not f.exists():
        raise ModelLoadError(f"{f}: file not found")
    try:
        return Tokenizer.from_file(str(f))
    except Exception as e:
        raise ModelLoadError(f"{f}: cannot parse tokenizer ({str(e).splitlines()[0]})") from None


def _normal_permissions(folder: Path) -> None:
    """chmod a checkpoint folder to 0777 and its files to 0666, less the umask (0755/0644 with the usual 022)."""
    umask = os.umask(0o022)  # the only way to read the umask is to set it; put it back at once
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def save_model(model: Transformer, path, tokenizer=None) -> None:
    """Write config.json, generation_config.json, model.safetensors (and tokenizer.json) atomically.

    Everything is written to a temporary folder next to `path`, which then replaces `path` by
    rename; if anything fails, an existing `path` is left exactly as it was. The folder and
    files get the usual permissions (0755/0644 under umask 022), not mkdtemp's private 0700.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    dtype = next(model.parameters()).dtype
    cfg_dict = cfg.to_hf_dict()
    cfg_dict["torch_dtype"] = str(dtype).removeprefix("torch.")
    eos = list(getattr(model, "eos_token_ids", None) or _as_id_list(cfg.eos_token_id))
    gen = {"eos_token_id": eos[0] if len(eos) == 1 else eos} if eos else {}
    if cfg.bos_token_id is not None:
        gen["bos_token_id"] = cfg.bos_token_id
    if cfg.pad_token_id is not None:
        gen["pad_token_id"] = cfg.pad_token_id
    tensors = {_hf_name(n): t.detach().contiguous().cpu() for n, t in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        tensors.pop("lm_head.weight")  # shared with model.embed_tokens.weight
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(cfg_dict, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save(str(tmp / "tokenizer.json"))
        _normal_permissions(tmp)  # mkdtemp makes 0700 and safetensors writes 0600
        if not path.exists():
            os.replace(tmp, path)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, old / path.name)  # move the old folder aside, swap the new one in
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old / path.name, path)  # put the old folder back
            raise
        shutil.rmtree(old)  # the old copy goes last
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
