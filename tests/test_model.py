import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import hf
from hf import ModelLoadError, config_from_hf_dict, config_to_hf_dict, load_model, load_tokenizer, save_model
from model import KVCache, ModelConfig, Transformer

FIX = Path(__file__).parent / "fixtures"
FAMILIES = ["qwen2", "llama", "qwen3"]


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, eos_token_id=2)
    return ModelConfig(**{**base, **kw})


def tiny_model(seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_cfg(**kw))


# ---- parity with transformers (golden values from tests/fixtures/make_fixtures.py) ----------

@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers_golden(family):
    m = load_model(FIX / family)
    g = load_file(str(FIX / family / "golden.safetensors"))
    with torch.no_grad():
        logits = m(g["input_ids"])
    assert logits.dtype == torch.float32 and logits.shape == g["logits"].shape
    assert (logits - g["logits"]).abs().max().item() <= 1e-4
    assert m.eos_token_ids == [2]


def test_fixture_configs_exercise_each_feature():
    q2, ll, q3 = (load_model(FIX / f).config for f in FAMILIES)
    assert q2.attention_bias and q2.tie_word_embeddings
    assert ll.rope_scaling["rope_type"] == "llama3" and not ll.tie_word_embeddings
    assert q3.qk_norm and q3.head_dim * q3.num_attention_heads != q3.hidden_size
    assert all(c.num_key_value_heads < c.num_attention_heads for c in (q2, ll, q3))


# ---- padding and the KV cache ----------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_row_equals_row_alone(family, side):
    m = load_model(FIX / family)
    rows = [[1, 5, 9, 33], [1, 40, 41, 42, 43, 44, 45], [7]]
    T = max(map(len, rows))
    ids = torch.full((3, T), 2)  # pad with the EOS id on purpose: masks must not look at ids
    mask = torch.zeros(3, T, dtype=torch.bool)
    for i, r in enumerate(rows):
        sl = slice(T - len(r), T) if side == "left" else slice(0, len(r))
        ids[i, sl], mask[i, sl] = torch.tensor(r), True
    with torch.no_grad():
        batch = m(ids, mask.long() if side == "right" else mask)
        for i, r in enumerate(rows):
            alone = m(torch.tensor([r]))[0]
            assert torch.isfinite(batch).all()
            assert (batch[i][mask[i]] - alone).abs().max().item() <= 1e-5


@pytest.mark.parametrize("kw", [dict(), dict(model_type="qwen2"), dict(model_type="qwen3", head_dim=16),
                                dict(model_type="mistral", num_key_value_heads=4)])
def test_kv_cache_decode_equals_full_forward(kw):
    m = tiny_model(**kw)
    ids = torch.randint(0, 64, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, :3] = False  # left padding in row 1
    with torch.no_grad():
        full = m(ids, mask)
        cache = KVCache(m.config, 2, 12, torch.float32, "cpu")
        parts = [m(ids[:, :7], mask[:, :7], cache=cache, start=0)]
        for t in range(7, 12):
            parts.append(m(ids[:, t:t + 1], mask[:, :t + 1], cache=cache, start=t))
    assert (torch.cat(parts, 1) - full)[mask].abs().max().item() <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_forward(dtype):
    m = tiny_model()
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        ref = m(ids)
        out = m.to(dtype)(ids)
    assert out.dtype == dtype and torch.isfinite(out).all()
    assert (out.float() - ref).abs().max().item() < 0.05 * ref.abs().max().item() + 0.05


def test_init_and_tying():
    m = tiny_model(tie_word_embeddings=True)
    assert m.lm_head.weight is m.embed_tokens.weight
    assert abs(m.layers[0].mlp.up_proj.weight.std().item() - 0.02) < 0.005
    assert tiny_model(tie_word_embeddings=False).lm_head.weight is not tiny_model().embed_tokens.weight


# ---- config -----------------------------------------------------------------------------------

def test_config_round_trip_and_both_rope_layouts():
    raw = json.loads((FIX / "llama" / "config.json").read_text())  # transformers 5.x layout
    cfg = config_from_hf_dict(raw)
    assert config_from_hf_dict(config_to_hf_dict(cfg)) == cfg
    v4 = {k: v for k, v in raw.items() if k != "rope_parameters"}
    rp = dict(raw["rope_parameters"])
    v4["rope_theta"] = rp.pop("rope_theta")
    v4["rope_scaling"] = rp
    assert config_from_hf_dict(v4) == cfg
    assert cfg.head_dim == 8 and cfg.num_key_value_heads == 2


@pytest.mark.parametrize("change, words", [
    (dict(model_type="gpt2"), "model_type 'gpt2'"),
    (dict(rope_parameters=dict(rope_type="yarn", rope_theta=1e4, factor=4.0)), "rope_scaling type 'yarn'"),
    (dict(model_type="mistral", sliding_window=16), "sliding_window=16"),
    (dict(use_sliding_window=True), "use_sliding_window"),
    (dict(layer_types=["sliding_attention", "full_attention"]), "layer_types 'sliding_attention'"),
    (dict(hidden_act="gelu"), "hidden_act 'gelu'"),
    (dict(num_key_value_heads=3), "num_key_value_heads 3"),
    (dict(hidden_size=None), "hidden_size"),
    (dict(hidden_size="32"), "hidden_size must be a positive integer, got '32'"),
    (dict(eos_token_id="</s>"), "eos_token_id must be an int or a list of ints"),
])
def test_config_errors_name_the_field(change, words):
    d = json.loads((FIX / "llama" / "config.json").read_text())
    d.update(change)
    if change.get("hidden_size", 0) is None:
        del d["hidden_size"]
    with pytest.raises(ModelLoadError, match=words.replace("[", r"\[")):
        config_from_hf_dict(d)


# ---- loading errors ---------------------------------------------------------------------------

def copy_fixture(tmp_path, family="llama") -> Path:
    dst = tmp_path / family
    shutil.copytree(FIX / family, dst)
    return dst


def one_line_error(fn, *args) -> str:
    with pytest.raises(ModelLoadError) as e:
        fn(*args)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_missing_folder_and_files(tmp_path):
    assert "model folder not found" in one_line_error(load_model, tmp_path / "nope")
    d = copy_fixture(tmp_path)
    assert "tokenizer.json: file not found" in one_line_error(load_tokenizer, d)
    (d / "model.safetensors").unlink()
    assert "no model.safetensors" in one_line_error(load_model, d)
    (d / "config.json").unlink()
    assert "config.json: file not found" in one_line_error(load_model, d)


def test_malformed_config_json(tmp_path):
    d = copy_fixture(tmp_path)
    (d / "config.json").write_text('{"model_type": "llama",\n "vocab_size": 12,,}')
    msg = one_line_error(load_model, d)
    assert "config.json" in msg and "line 2" in msg


def test_shape_mismatch_names_tensor_and_shapes(tmp_path):
    d = copy_fixture(tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    sd["model.layers.1.mlp.up_proj.weight"] = torch.zeros(60, 32)
    save_file(sd, str(d / "model.safetensors"))
    msg = one_line_error(load_model, d)
    assert "'model.layers.1.mlp.up_proj.weight'" in msg and "(60, 32)" in msg and "(64, 32)" in msg
    del sd["model.layers.1.mlp.up_proj.weight"]
    save_file(sd, str(d / "model.safetensors"))
    assert "'model.layers.1.mlp.up_proj.weight' missing" in one_line_error(load_model, d)
    (d / "model.safetensors").write_bytes(b"garbage")
    assert "cannot read safetensors" in one_line_error(load_model, d)


def test_sharded_checkpoint(tmp_path):
    d = copy_fixture(tmp_path)
    sd = load_file(str(d / "model.safetensors"))
    names = sorted(sd)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for f, ns in shards.items():
        save_file({n: sd[n] for n in ns}, str(d / f))
    (d / "model.safetensors").unlink()
    index = {"metadata": {}, "weight_map": {n: f for f, ns in shards.items() for n in ns}}
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(load_model(d)(ids), load_model(FIX / "llama")(ids))
    (d / "model-00002-of-00002.safetensors").unlink()
    assert "model-00002-of-00002.safetensors: weight file not found" in one_line_error(load_model, d)


# ---- saving -----------------------------------------------------------------------------------

def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({"<pad>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return tok


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_round_trip(tmp_path, family):
    m = load_model(FIX / family)
    save_model(m, tmp_path / "ckpt", tokenizer=word_tokenizer())
    m2 = load_model(tmp_path / "ckpt")
    ids = torch.tensor([[1, 7, 9, 30, 2]])
    with torch.no_grad():
        assert torch.equal(m(ids), m2(ids))
    assert m2.config == m.config and m2.eos_token_ids == m.eos_token_ids
    assert load_tokenizer(tmp_path / "ckpt").encode("a b").ids == [3, 4]
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved["architectures"][0].lower().startswith(family) and saved["torch_dtype"] == "float32"
    if m.config.tie_word_embeddings:
        assert "lm_head.weight" not in load_file(str(tmp_path / "ckpt" / "model.safetensors"))


def test_eos_ids_union_of_sources(tmp_path):
    m = tiny_model(eos_token_id=2)
    m.eos_token_ids = [2, 4]
    save_model(m, tmp_path / "c", tokenizer=word_tokenizer())
    assert load_model(tmp_path / "c").eos_token_ids == [2, 4]
    (tmp_path / "c" / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "a"}}))
    assert load_model(tmp_path / "c").eos_token_ids == [2, 4, 3]


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt"
    old = tiny_model(seed=0)
    save_model(old, path)
    before = {f.name: f.read_bytes() for f in path.iterdir()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(hf, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_model(seed=1), path)
    assert {f.name: f.read_bytes() for f in path.iterdir()} == before
    assert os.listdir(tmp_path) == ["ckpt"]  # no temporary folder left behind
    monkeypatch.undo()
    save_model(tiny_model(seed=1), path)  # replacing an existing folder works
    assert {f.name: f.read_bytes() for f in path.iterdir()} != before
    assert os.listdir(tmp_path) == ["ckpt"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_saved_checkpoint_has_normal_permissions(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_model(tiny_model(), tmp_path / "ckpt", tokenizer=word_tokenizer())
        save_model(tiny_model(seed=1), tmp_path / "ckpt")  # replacing an existing folder too
    finally:
        os.umask(old)
    assert (tmp_path / "ckpt").stat().st_mode & 0o777 == 0o777 & ~umask
    files = sorted(f.name for f in (tmp_path / "ckpt").iterdir())
    assert files == ["config.json", "generation_config.json", "model.safetensors"]
    for f in (tmp_path / "ckpt").iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f.name


def test_load_dtype_and_device():
    m = load_model(FIX / "qwen3", device="cpu", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in m.parameters())
    with torch.no_grad():
        out = m(torch.tensor([[1, 2, 3]]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
