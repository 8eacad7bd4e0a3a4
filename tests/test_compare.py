"""compare.py end to end on a tiny random model: the structure and arithmetic of results.json."""
import json

import numpy as np
import pytest
import torch

import compare
import train
import verifier
from train_helpers import plain_data, tiny_model_dir


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """2 seeds x (GRPO, ARM alpha 1, ARM alpha 0.5), 2 steps each. A random model never answers right,
    so rewards are 'the response has an even number of characters': every statistic is non-trivial."""
    d = tmp_path_factory.mktemp("compare")
    model, data = tiny_model_dir(d / "model"), plain_data(d / "data.jsonl")
    mp = pytest.MonkeyPatch()
    mp.setattr(verifier, "verify", lambda response, gold: len(response) % 2 == 0)
    argv = ["--model", str(model), "--data", str(data), "--seeds", "2", "--alphas", "0.5", "--steps", "2",
            "--prompts-per-step", "3", "--group-size", "4", "--max-new-tokens", "6", "--micro-batch", "12",
            "--eval-prompts", "3", "--eval-n", "8", "--lr", "3e-3", "--warmup-steps", "1", "--threads", "1",
            "--out", str(d / "out"), "--runs", str(d / "runs")]
    try:
        assert compare.main(argv) == 0
    finally:
        mp.undo()
    return json.loads((d / "out" / "results.json").read_text()), d


def test_every_method_and_seed_is_there(results):
    res, _ = results
    assert set(res["methods"]) == {"base", "grpo", "arm@0.5", "arm@1"}
    assert res["main"] == {"grpo": "grpo", "arm": "arm@1"}
    assert res["alphas"] == [0.0, 0.5, 1.0]
    assert len(res["methods"]["base"]["runs"]) == 1
    for name in ("grpo", "arm@0.5", "arm@1"):
        runs = res["methods"][name]["runs"]
        assert [r["seed"] for r in runs] == [0, 1]
        assert all(r["alpha"] == res["methods"][name]["alpha"] for r in runs)
        assert all(len(r["curve"]["step"]) == 2 and r["final"]["step"] == 2 for r in runs)


def test_same_eval_prompts_and_settings_for_every_method(results):
    res, d = results
    digest = compare.prompts_digest(res["eval"]["prompts"])
    assert len(res["eval"]["prompts"]) == 3 and res["eval"]["n"] == 8
    for m in res["methods"].values():
        for r in m["runs"]:
            assert r["eval_prompts_digest"] == digest
            assert r["final"]["prompts"] == 3 and r["final"]["n"] == 8
    # the run configs differ in alpha (and algo) only, per seed
    cfgs = {(n, r["seed"]): json.loads((d / "runs" / f"{n}-seed{r['seed']}" / "config.json").read_text())
            for n in ("grpo", "arm@0.5", "arm@1") for r in res["methods"][n]["runs"]}
    for (n, seed), c in cfgs.items():
        ref = cfgs[("grpo", seed)]
        assert c["alpha"] == res["methods"][n]["alpha"]
        assert {k: v for k, v in c.items() if k not in ("alpha", "algo", "out")} == \
               {k: v for k, v in ref.items() if k not in ("alpha", "algo", "out")}


def test_pass_at_k_is_monotone_and_matches_the_counts(results):
    res, _ = results
    for m in res["methods"].values():
        for r in m["runs"]:
            e = r["final"]
            ks = [int(k) for k in e["pass@k"]]
            assert ks == [1, 2, 4, 8]
            vals = [e["pass@k"][str(k)] for k in ks]
            assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:]))
            assert vals[0] == pytest.approx(sum(e["n_correct"]) / (8 * 3))  # pass@1 = accuracy
            assert vals[-1] == pytest.approx(np.mean([c > 0 for c in e["n_correct"]]))  # pass@n: any correct
            assert e["accuracy"] == pytest.approx(vals[0])
    assert any(0 < r["final"]["pass@k"]["1"] < 1 for m in res["methods"].values() for r in m["runs"])


def test_means_and_stds_over_seeds(results):
    res, _ = results
    for name in ("grpo", "arm@0.5", "arm@1"):
        runs, s = res["methods"][name]["runs"], res["methods"][name]["summary"]
        for k in s["pass@k"]:
            v = [r["final"]["pass@k"][k] for r in runs]
            assert s["pass@k"][k]["mean"] == pytest.approx(np.mean(v))
            assert s["pass@k"][k]["std"] == pytest.approx(abs(v[0] - v[1]) / np.sqrt(2))  # ddof 1, two seeds
        for k in ("entropy", "distinct_correct", "accuracy"):
            v = [r["final"][k] for r in runs]
            assert s[k]["mean"] == pytest.approx(np.mean(v)) and s[k]["std"] == pytest.approx(np.std(v, ddof=1))
        for k in compare.CURVES:
            rows = np.array([r["curve"][k] for r in runs])
            assert s["curve"][k]["mean"] == pytest.approx(rows.mean(0).tolist())
            assert s["curve"][k]["std"] == pytest.approx(rows.std(0, ddof=1).tolist())
    base = res["methods"]["base"]["summary"]
    assert base["pass@k"]["1"]["std"] is None and base["pass@k"]["1"]["n"] == 1
    # paired difference, seed by seed
    d = res["arm_minus_grpo"]["pass@k"]["1"]
    arm, grpo = res["methods"]["arm@1"]["runs"], res["methods"]["grpo"]["runs"]
    diffs = [a["final"]["pass@k"]["1"] - g["final"]["pass@k"]["1"] for a, g in zip(arm, grpo)]
    assert d["mean"] == pytest.approx(np.mean(diffs)) and d["std"] == pytest.approx(np.std(diffs, ddof=1))


def test_tables_and_plot_only_mode(results, capsys):
    res, d = results
    table = compare.format_tables(res)
    assert "| pass@8 |" in table and "ARM − GRPO" in table and "| 0.5 |" in table
    assert compare.main(["--plot", str(d / "out" / "results.json")]) == 0
    assert "| pass@1 |" in capsys.readouterr().out


def test_mean_std_edge_cases():
    assert compare.mean_std([]) == {"mean": None, "std": None, "n": 0}
    assert compare.mean_std([0.5, None]) == {"mean": 0.5, "std": None, "n": 1}
    assert compare.mean_std([1.0, 2.0, 3.0])["std"] == pytest.approx(1.0)


def no_runs(values):
    raise AssertionError("a bad flag got as far as the runs")


@pytest.mark.parametrize("argv, msg", [
    (["--seeds", "0"], "--seeds"),
    (["--alphas", "0.1,x"], "--alphas"),
    (["--alphas", "-1"], "--alphas"),
    (["--alpha", "0"], "--alpha"),
    (["--seed", "3"], "--seed: set by compare.py"),  # not an abbreviation of --seeds
    (["--algo", "grpo"], "--algo: set by compare.py"),
])
def test_bad_flags_are_one_line_errors(argv, msg, capsys, monkeypatch):
    monkeypatch.setattr(compare, "evaluate_base", no_runs)  # a flag that slipped through fails here, fast
    assert compare.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compare.py: error:") and msg in err and "\n" not in err


def test_train_config_errors_surface_before_any_run(capsys, monkeypatch):
    monkeypatch.setattr(compare, "evaluate_base", no_runs)
    assert compare.main(["--group-size", "1"]) == 2
    assert "group_size" in capsys.readouterr().err
