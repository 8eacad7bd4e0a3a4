"""bench/gpu_check.py's CPU dry run (--device cpu --tiny), so that the one-shot GPU check cannot rot:
every part runs on tiny shapes, with transformers and with it unimportable (CI has none)."""
import json
import sys

import pytest

from bench import gpu_check


def run(tmp_path) -> dict:
    out = tmp_path / "r.json"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--repeats", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["ok"] and res["failed"] == []
    return res


def check_common(r: dict) -> None:
    assert r["build"]["decode_oov"].startswith("ok")  # ids past the tokenizer's vocab decode (to nothing)
    s = r["sampler"]
    assert s["useful_tokens"] > 0 and all(v > 0 for v in s["tokens_per_s"].values())
    ours = {f"ours {dtype} {how}" for dtype in ("bf16", "fp32+autocast") for how in ("eager", "graph")}
    assert ours <= set(s["seconds"])
    assert 0.0 <= s["eager_graph_same"] <= 1.0
    t = r["train"]
    assert t["rc"] == 0 and len(t["steps"]) == 3 and t["policy_saved"]
    assert all(m["time_s"] > 0 and m["response_len"] >= 1 for m in t["steps"])


def test_dry_run_with_transformers(tmp_path, capsys):
    pytest.importorskip("transformers")
    res = run(tmp_path)
    r = res["sizes"]["tiny"]
    check_common(r)
    lg = r["logits"]
    assert lg["fp32"] <= gpu_check.FP32_TOL and lg["bf16_vs_hf_bf16"] <= gpu_check.BF16_VS_HF_TOL
    assert 0.0 < lg["hf_bf16_vs_hf_fp32"] < 0.1 and lg["argmax_agree"] > 0.5
    assert any(k.startswith("transformers") for k in r["sampler"]["seconds"])
    out = capsys.readouterr().out
    assert "[4 train]" in out and "every check passed" in out


def test_dry_run_without_transformers(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    res = run(tmp_path)
    assert res["device"]["transformers"] == "not importable"
    r = res["sizes"]["tiny"]
    check_common(r)
    assert r["logits"]["hf"] == "skipped" and 0.0 < r["logits"]["ours_bf16_vs_ours_fp32"] < 0.1
    assert not any(k.startswith("transformers") for k in r["sampler"]["seconds"])
    assert "transformers not importable:" in capsys.readouterr().out
