"""Hugging Face model folders: config.json <-> ModelConfig, and loading and saving model and tokenizer.

A folder holds config.json, model.safetensors (or the shards listed in model.safetensors.index.json),
and optionally generation_config.json, tokenizer.json and tokenizer_config.json. The parameter names
of model.Transformer are the Hugging Face names without the leading "model.", so a checkpoint loads
with a dictionary rename and a folder we save loads in transformers/vLLM unchanged.

    load_model(path)        config.json -> ModelConfig -> Transformer, weights checked name by name
                            and shape by shape; model.eos_token_ids from every file that names one
    load_tokenizer(path)    tokenizers.Tokenizer from tokenizer.json
    save_model(model, path) config.json, generation_config.json, model.safetensors (and tokenizer.json),
                            written atomically

Every error a user can cause (a missing file, malformed JSON, an unsupported config field, a tensor
missing or of the wrong shape) is a ModelLoadError whose message is one line naming the file and the
field or tensor.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model import SUPPORTED_MODEL_TYPES, ModelConfig, Transformer, as_id_list


class ModelLoadError(ValueError):
    """A checkpoint folder or config we cannot load; the message is one line naming the file/field."""


# ----------------------------------------------------------------------------------------------
# config.json <-> ModelConfig


def config_from_hf_dict(d: dict) -> ModelConfig:
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
    known = {f.name for f in fields(ModelConfig)}
    kw = {k: d[k] for k in known if k in d and k not in ("rope_scaling", "rope_theta", "torch_dtype")}
    kw["rope_theta"] = float(theta if theta is not None else 10000.0)
    kw["rope_scaling"] = dict(scaling) if scaling else None
    dt = d.get("torch_dtype") or d.get("dtype") or "float32"
    kw["torch_dtype"] = str(dt).replace("torch.", "")
    if kw.get("head_dim") is None:
        kw.pop("head_dim", None)
    if kw.get("num_key_value_heads") is None:
        kw.pop("num_key_value_heads", None)
    try:
        return ModelConfig(**kw)
    except ValueError as e:  # ModelConfig.validate: "config: <field> ..."
        raise ModelLoadError(str(e)) from None


def config_to_hf_dict(cfg: ModelConfig) -> dict:
    """A config.json that transformers (4.x and 5.x) and vLLM load unchanged."""
    d = asdict(cfg)
    d.pop("qk_norm")  # implied by model_type qwen3
    if cfg.model_type == "qwen2":
        d.pop("attention_bias")  # implied by model_type qwen2
    d["architectures"] = [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                           "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[cfg.model_type]]
    d["hidden_act"] = "silu"
    if cfg.model_type == "mistral":
        d["sliding_window"] = None
    if cfg.model_type in ("qwen2", "qwen3"):
        d["use_sliding_window"] = False
    # both rope layouts: 4.x reads rope_theta/rope_scaling, 5.x reads rope_parameters
    d["rope_parameters"] = {"rope_type": "default", **(cfg.rope_scaling or {}), "rope_theta": cfg.rope_theta}
    d["rope_parameters"].pop("type", None)
    return d


# ----------------------------------------------------------------------------------------------
# loading and saving Hugging Face folders


def _as_id_list(x) -> list[int]:
    """model.as_id_list, its error a ModelLoadError (an eos_token_id read from a file)."""
    try:
        return as_id_list(x)
    except ValueError as e:
        raise ModelLoadError(str(e)) from None


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
        return config_from_hf_dict(d)
    except ModelLoadError as e:
        raise ModelLoadError(f"{p / 'config.json'}: {str(e).removeprefix('config: ')}") from None
    except (TypeError, ValueError) as e:  # e.g. a field of the wrong type reaching the dataclass
        raise ModelLoadError(f"{p / 'config.json'}: {e}") from None


def _eos_token_ids(p: Path, cfg: ModelConfig) -> list[int]:
    """Union of EOS ids from generation_config.json, config.json and tokenizer_config.json."""
    ids: list[int] = []
    if (p / "generation_config.json").exists():
        ids += _as_id_list(_read_json(p / "generation_config.json").get("eos_token_id"))
    ids += as_id_list(cfg.eos_token_id)  # validated with the config
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
    cfg_dict = config_to_hf_dict(cfg)
    cfg_dict["torch_dtype"] = str(dtype).removeprefix("torch.")
    eos = list(getattr(model, "eos_token_ids", None) or as_id_list(cfg.eos_token_id))
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


def pick_template(model_dir: str | Path) -> tuple[str, str]:
    """--template auto: (template, why) from the special tokens of the model's tokenizer.json; between
    the two ChatML templates, config.json's model_type decides (qwen-chat for Qwen models)."""
    tok = load_tokenizer(model_dir)
    has = lambda *tokens: all(tok.token_to_id(t) is not None for t in tokens)
    if has("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        return "llama3-chat", "the tokenizer has Llama 3's <|start_header_id|> and <|eot_id|>"
    if has("<|im_start|>", "<|im_end|>"):
        cfg_file = Path(model_dir) / "config.json"
        try:
            model_type = json.loads(cfg_file.read_text()).get("model_type", "")
        except (OSError, ValueError, AttributeError):  # load_model reports a broken config.json, naming it
            model_type = ""
        if str(model_type).startswith("qwen"):
            return "qwen-chat", f"the tokenizer has ChatML's <|im_start|> and <|im_end|>; model_type {model_type}"
        return "chatml", f"the tokenizer has ChatML's <|im_start|> and <|im_end|>; model_type {model_type or '?'} is not Qwen"
    return "plain", "the tokenizer has no chat markers"
