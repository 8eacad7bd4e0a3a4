"""research/compare.py end to end on a tiny random model and on the toys: the structure and arithmetic of results.json."""
import json

import numpy as np
import pytest

import arm
from research import compare, methods, report
import verifier
from train_helpers import plain_data, tiny_model_dir

METHODS = ["grpo", "arm", "arm-centred-correct-only", "arm-centred-correct-only@10"]


def tiny_run(d) -> list[str]:
    """The flags of a 2-step run on the tiny model and data in folder d (regime original)."""
    return ["--regime", "original", "--model", str(d / "model"), "--data", str(d / "data.jsonl"), "--steps", "2",
            "--prompts-per-step", "3", "--group-size", "4", "--max-new-tokens", "6", "--micro-batch", "12",
            "--eval-prompts", "3", "--eval-n", "8", "--lr", "3e-3", "--warmup-steps", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """2 seeds x (GRPO, ARM as written, the centred correct-only ablation, ARM alpha 0.5), 2 steps each.
    A random model never answers right, so rewards are 'the response has an even number of
    characters': every statistic is non-trivial."""
    d = tmp_path_factory.mktemp("compare")
    tiny_model_dir(d / "model")
    plain_data(d / "data.jsonl")
    mp = pytest.MonkeyPatch()
    mp.setattr(verifier, "verify", lambda response, gold: len(response) % 2 == 0)
    argv = ["--method", ",".join(METHODS + ["arm@0.5"]), "--alphas", "0.5", "--seeds", "2", *tiny_run(d),
            "--out", str(d / "out"), "--runs", str(d / "runs")]
    try:
        assert compare.main(argv) == 0
    finally:
        mp.undo()
    return json.loads((d / "out" / "original" / "results.json").read_text()), d


def test_every_method_and_seed_is_there(results):
    res, _ = results
    assert res["regime"] == "original"
    assert list(res["methods"]) == ["base"] + METHODS + ["arm@0.5"]
    assert set(res["minus_grpo"]) == {"arm", "arm-centred-correct-only", "arm-centred-correct-only@10", "arm@0.5"}
    assert len(res["methods"]["base"]["runs"]) == 1
    for name in METHODS + ["arm@0.5"]:
        runs = res["methods"][name]["runs"]
        assert [r["seed"] for r in runs] == [0, 1]
        assert all(len(r["curve"]["step"]) == 2 and r["final"]["step"] == 2 for r in runs)
    assert res["methods"]["arm"]["variant"] == {"algo": "arm", "alpha": 1.0, "shift_rows": "group", "shift_center": "prompt"}
    assert res["methods"]["arm-centred-correct-only"]["variant"]["shift_rows"] == "correct"
    assert res["methods"]["arm@0.5"]["variant"]["alpha"] == 0.5
    assert res["methods"]["arm-centred-correct-only@10"]["variant"] == {
        "algo": "arm", "alpha": 10.0, "shift_rows": "correct", "shift_center": "correct-mean"}


def test_same_eval_prompts_and_settings_for_every_method(results):
    res, d = results
    digest = compare.prompts_digest(res["eval"]["prompts"])
    assert len(res["eval"]["prompts"]) == 3 and res["eval"]["n"] == 8
    for m in res["methods"].values():
        for r in m["runs"]:
            assert r["eval_prompts_digest"] == digest
            assert r["final"]["prompts"] == 3 and r["final"]["n"] == 8
    # the run configs differ only in the advantage's settings, per seed
    advantage = ("alpha", "algo", "out", "shift_rows", "shift_center")
    cfgs = {(n, r["seed"]): json.loads((d / "runs" / "original" / f"{n}-seed{r['seed']}" / "config.json").read_text())
            for n in METHODS for r in res["methods"][n]["runs"]}
    for (n, seed), c in cfgs.items():
        assert {k: c[k] for k in ("shift_rows", "shift_center")} == \
               {k: res["methods"][n]["variant"].get(k, "group" if k == "shift_rows" else "prompt") for k in ("shift_rows", "shift_center")}
        ref = cfgs[("grpo", seed)]
        assert {k: v for k, v in c.items() if k not in advantage} == {k: v for k, v in ref.items() if k not in advantage}


def test_pass_at_k_for_every_k_matches_the_counts(results):
    res, _ = results
    for m in res["methods"].values():
        for r in m["runs"]:
            e, f = r["final"], report.finals(r)
            vals = [f[f"pass@{k}"] for k in range(1, 9)]
            assert all(a <= b + 1e-12 for a, b in zip(vals, vals[1:]))
            assert vals[0] == pytest.approx(sum(e["n_correct"]) / (8 * 3))  # pass@1 = accuracy
            assert vals[-1] == pytest.approx(np.mean([c > 0 for c in e["n_correct"]]))  # pass@n: any correct
            for k in e["pass@k"]:  # train.evaluate's powers of two agree
                assert f[f"pass@{k}"] == pytest.approx(e["pass@k"][k])
            assert f["pass@3"] == pytest.approx(np.mean([arm.pass_at_k(8, c, 3) for c in e["n_correct"]]))
    assert any(0 < r["final"]["pass@k"]["1"] < 1 for m in res["methods"].values() for r in m["runs"])


def test_means_stds_and_paired_intervals_over_seeds(results):
    res, _ = results
    for name in METHODS:
        runs, s = res["methods"][name]["runs"], res["methods"][name]["summary"]
        for k in ("pass@1", "pass@5", "entropy", "distinct_correct", "accuracy"):
            v = [report.finals(r)[k] for r in runs]
            assert s[k]["mean"] == pytest.approx(np.mean(v))
            assert s[k]["std"] == pytest.approx(np.std(v, ddof=1))
            assert s[k]["ci95"] == pytest.approx(12.706 * np.std(v, ddof=1) / np.sqrt(2))  # t(0.975, 1 df)
        for k in report.CURVES:
            rows = np.array([r["curve"][k] for r in runs])
            assert s["curve"][k]["mean"] == pytest.approx(rows.mean(0).tolist())
    base = res["methods"]["base"]["summary"]
    assert base["pass@1"]["std"] is None and base["pass@1"]["n"] == 1
    d = res["minus_grpo"]["arm"]["pass@1"]
    a, g = res["methods"]["arm"]["runs"], res["methods"]["grpo"]["runs"]
    diffs = [x["final"]["pass@k"]["1"] - y["final"]["pass@k"]["1"] for x, y in zip(a, g)]
    assert d["mean"] == pytest.approx(np.mean(diffs)) and d["std"] == pytest.approx(np.std(diffs, ddof=1))


def test_tables_plot_only_mode_and_relative_paths(results, capsys):
    res, d = results
    table = report.format_tables(res)
    assert "| pass@8 |" in table and "method − GRPO" in table and "arm-centred-correct-only" in table
    assert compare.main(["--plot", str(d / "out" / "original" / "results.json")]) == 0
    assert "| pass@1 |" in capsys.readouterr().out
    assert compare.repo_relative(compare.ROOT / "toys" / "original") == "toys/original"


def test_one_cell_reruns_beside_the_stored_one(results, capsys, monkeypatch):
    res, d = results
    monkeypatch.setattr(verifier, "verify", lambda response, gold: len(response) % 2 == 0)
    argv = ["--method", "arm", "--seed", "1", *tiny_run(d), "--out", str(d / "out"), "--runs", str(d / "rerun")]
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    stored = next(r for r in res["methods"]["arm"]["runs"] if r["seed"] == 1)["final"]["pass@k"]["1"]
    row = next(line for line in out.splitlines() if line.startswith("| original | arm | 1 | pass@1 |"))
    this, before = (float(x) for x in row.split("|")[5:7])
    assert before == pytest.approx(stored, abs=5e-4)
    assert this == pytest.approx(stored, abs=5e-4)  # same machine, same code: the same numbers
    assert json.loads((d / "out" / "original" / "results.json").read_text()) == res  # nothing overwritten


def test_toy_regimes_record_path_shares(tmp_path):
    argv = ["--regime", ",".join(compare.REGIMES), "--method", "grpo,arm-centred", "--seeds", "1", "--steps", "1",
            "--prompts-per-step", "2",
            "--group-size", "2", "--eval-prompts", "2", "--eval-n", "4", "--out", str(tmp_path / "out"),
            "--runs", str(tmp_path / "runs")]
    assert compare.main(argv) == 0
    for regime in compare.REGIMES:
        res = json.loads((tmp_path / "out" / regime / "results.json").read_text())
        paths = res["methods"]["base"]["runs"][0]["final"]["paths"]
        assert sum(s["correct"] + s["wrong"] for s in paths.values()) == 2 * 4
        shares = {k: v["mean"] for k, v in res["methods"]["grpo"]["summary"].items() if k.startswith("share:")}
        assert sum(shares.values()) == pytest.approx(1.0) or sum(shares.values()) == 0  # 0: no correct sample
        assert res["methods"]["base"]["runs"][0]["out"] == f"toys/{regime}"


def test_mean_std_edge_cases():
    assert report.mean_std([]) == {"mean": None, "std": None, "ci95": None, "n": 0}
    assert report.mean_std([0.5, None]) == {"mean": 0.5, "std": None, "ci95": None, "n": 1}
    s = report.mean_std([1.0, 2.0, 3.0])
    assert s["std"] == pytest.approx(1.0) and s["ci95"] == pytest.approx(4.303 / np.sqrt(3))


def no_runs(*a):
    raise AssertionError("a bad flag got as far as the runs")


@pytest.mark.parametrize("argv, msg", [
    (["--seeds", "0"], "--seeds"),
    (["--alphas", "0.1,x"], "--alphas"),
    (["--alphas", "-1"], "--alphas"),
    (["--alpha", "0"], "--alpha"),
    (["--regime", "big"], "--regime: 'big' is not one of"),
    (["--method", "ppo"], "--method: 'ppo' is not one of"),
    (["--method", "grpo@2"], "--method: 'grpo@2' is not one of"),
    (["--method", "arm@x"], "--method: 'arm@x': the alpha"),
    (["--method", "arm@-1"], "--method: 'arm@-1': the alpha"),
    (["--seed", "-1"], "--seed"),
    (["--toy", "original"], "--toy: set by compare.py"),
    (["--shift-rows", "correct"], "--shift-rows: set by compare.py"),
    (["--algo", "grpo"], "--algo: set by compare.py"),
])
def test_bad_flags_are_one_line_errors(argv, msg, capsys, monkeypatch):
    monkeypatch.setattr(compare, "evaluate_base", no_runs)  # a flag that slipped through fails here, fast
    monkeypatch.setattr(compare, "run_all", no_runs)
    assert compare.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("compare.py: error:") and msg in err and "\n" not in err


def test_train_config_errors_surface_before_any_run(capsys, monkeypatch):
    monkeypatch.setattr(compare, "evaluate_base", no_runs)
    assert compare.main(["--group-size", "1"]) == 2
    assert "group_size" in capsys.readouterr().err


def test_verdicts_follow_the_decision_rules():
    s = lambda mean, ci: {"mean": mean, "std": None, "ci95": ci, "n": 12}
    assert report.verdict(s(0.05, 0.02)) == "holds"
    assert report.verdict(s(-0.05, 0.02)) == "against"
    assert report.verdict(s(0.01, 0.02)) == "undecided"
    assert report.verdict(s(0.05, None)) == "undecided"  # one seed decides nothing
    res = {"minus_grpo": {"m": {"entropy": s(0.1, 0.01), "pass@n-pass@1": s(0.1, 0.01), "pass@1": s(-0.1, 0.01),
                                "distinct_correct": s(0.0, 0.1)}}, "regime": "r"}
    # a larger pass@32 - pass@1 that comes from a lower pass@1 is not claim 2
    assert report.claims(res)["m"] == {"1 entropy": "holds", "2 pass@k gain grows": "against", "3 distinct paths": "undecided"}
    res["minus_grpo"]["m"]["pass@1"] = s(-0.01, 0.02)
    assert report.claims(res)["m"]["2 pass@k gain grows"] == "holds"
    assert "| m | holds (+0.100 [+0.090, +0.110])" in report.format_claims(res)


def test_reuse_reads_finished_runs_and_trains_the_rest(results, monkeypatch):
    res, d = results
    monkeypatch.setattr(verifier, "verify", lambda response, gold: len(response) % 2 == 0)
    argv = ["--method", ",".join(METHODS + ["arm@0.5"]), "--alphas", "0.5", "--seeds", "2", *tiny_run(d),
            "--out", str(d / "reused"), "--runs", str(d / "runs"), "--reuse"]
    import shutil
    shutil.rmtree(d / "runs" / "original" / "arm-seed1" / "policy")  # as if killed before its end
    trained = []
    real_train = compare.train.train
    monkeypatch.setattr(compare.train, "train", lambda cfg, log=None, **kw: trained.append(cfg.out) or real_train(cfg, log=log, **kw))
    assert compare.main(argv) == 0
    assert trained == [str(d / "runs" / "original" / "arm-seed1")]  # only the unfinished one trains again
    again = json.loads((d / "reused" / "original" / "results.json").read_text())
    for name in res["methods"]:
        for a, b in zip(again["methods"][name]["runs"], res["methods"][name]["runs"]):
            assert a["final"] == b["final"] and a.get("curve") == b.get("curve")  # same machine: the same numbers


def test_methods_default_per_regime_and_the_baseline_parses():
    args, values = compare.parse_args(["--regime", "original,hidden-type"])
    assert args.methods["original"] == list(methods.DEFAULT_METHODS)
    assert args.methods["hidden-type"] == list(methods.HIDDEN_METHODS)
    assert values["hidden-type"]["eval_prompts"] == 128 and values["original"]["eval_prompts"] == 64
    assert methods.method_values("unlikely", 1.0) == {"algo": "unlikely", "rank_penalty": methods.RANK_PENALTY}
    assert methods.method_values("unlikely@0.5", 1.0)["rank_penalty"] == 0.5
    assert methods.method_values("arm@3", 1.0)["alpha"] == 3.0
    args, _ = compare.parse_args(["--regime", "hidden-type", "--method", "unlikely", "--seeds", "2"])
    assert args.methods["hidden-type"] == ["grpo", "unlikely"]  # GRPO is always run as the reference


# ----------------------------------------------------------------------------------------------
# every command safe to run twice: where a comparison writes


def tree_bytes(root) -> dict:
    """Every file under root -> its bytes: 'nothing changed there' is this dict, before and after."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


STORED = compare.ROOT / "research" / "results"


def test_without_output_flags_a_comparison_writes_a_fresh_folder_not_the_stored_results(results, tmp_path, monkeypatch):
    """The issue's case: a one-seed, two-step comparison without --out replaced the stored 12-seed results.json."""
    _, d = results
    monkeypatch.chdir(tmp_path)  # the old default, research/results, was relative: it would appear here
    before = tree_bytes(STORED)
    assert compare.main(["--method", "grpo", "--seeds", "1", *tiny_run(d)]) == 0
    assert tree_bytes(STORED) == before and not (tmp_path / "research").exists()
    [folder] = (tmp_path / "runs").iterdir()  # runs/compare-<time>/: the run folders and the results beside them
    assert folder.name.startswith("compare-")
    res = json.loads((folder / "original" / "results.json").read_text())
    assert res["seeds"] == [0] and res["methods"]["grpo"]["runs"][0]["out"].endswith("original/grpo-seed0")
    assert (folder / "original" / "grpo-seed0" / "policy").is_dir()
    assert report.format_tables(res) in (folder / "original" / report.TABLES_MD).read_text()  # written with results.json


def test_one_cell_rerun_reads_the_stored_results_and_writes_nothing_there(results, tmp_path, monkeypatch, capsys):
    res, d = results
    monkeypatch.chdir(tmp_path)
    before, stored_before = tree_bytes(d / "out"), tree_bytes(STORED)
    assert compare.main(["--method", "arm", "--seed", "0", *tiny_run(d), "--out", str(d / "out")]) == 0
    assert tree_bytes(d / "out") == before and tree_bytes(STORED) == stored_before
    [folder] = (tmp_path / "runs").iterdir()
    assert [p.name for p in (folder / "original").iterdir()] == ["arm-seed0"]  # the run folder only
    assert f"(stored: {d / 'out'}/<regime>/results.json" in capsys.readouterr().out


def test_storing_fewer_over_stored_results_is_refused_unless_overwrite(results, tmp_path, monkeypatch, capsys):
    _, d = results
    import shutil
    stored = shutil.copytree(d / "out", tmp_path / "stored")  # 2 seeds x 5 methods x 2 steps
    monkeypatch.chdir(tmp_path)
    argv = ["--method", "grpo", "--seeds", "1", *tiny_run(d), "--out", str(stored)]
    monkeypatch.setattr(compare, "evaluate_base", no_runs)  # refused before any run
    before = tree_bytes(stored)
    assert compare.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"compare.py: error: {stored}/original/results.json holds more than this comparison would write "
                   "(2 seeds -> 1, 5 methods -> 1 (without arm, arm-centred-correct-only, arm-centred-correct-only@10, "
                   "arm@0.5)): add --overwrite to replace it, or give another --out")
    assert tree_bytes(stored) == before and not (tmp_path / "runs").exists()  # nothing made, nothing changed
    assert compare.main([*argv[:-2], "--steps", "1", "--method", ",".join(METHODS + ["arm@0.5"]), "--seeds", "2",
                         "--out", str(stored)]) == 2
    assert "(2 steps -> 1)" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert compare.main(argv + ["--overwrite"]) == 0
    res = json.loads((stored / "original" / "results.json").read_text())
    assert res["seeds"] == [0] and list(res["methods"]) == ["base", "grpo"]
    assert report.format_tables(res) in (stored / "original" / report.TABLES_MD).read_text()  # the two agree


def test_the_issues_command_cannot_replace_the_stored_hidden_type_results(capsys, monkeypatch):
    monkeypatch.setattr(compare, "evaluate_base", no_runs)
    monkeypatch.setattr(compare, "run_all", no_runs)
    before = tree_bytes(STORED)
    argv = ["--regime", "hidden-type", "--method", "grpo", "--seeds", "1", "--steps", "2", "--eval-prompts", "2",
            "--eval-n", "2", "--out", str(STORED)]
    assert compare.main(argv) == 2
    err = capsys.readouterr().err
    assert "hidden-type/results.json holds more than this comparison would write (12 seeds -> 1, 8 methods -> 1" in err
    assert "200 steps -> 2, 128 held-out prompts -> 2, 32 samples per prompt -> 2): add --overwrite" in err
    assert err.count("\n") == 1 and tree_bytes(STORED) == before


def test_a_runs_folder_that_holds_these_runs_is_refused_before_any_run(results, tmp_path, capsys, monkeypatch):
    _, d = results
    monkeypatch.setattr(compare, "evaluate_base", no_runs)
    argv = ["--method", "grpo", "--seeds", "1", *tiny_run(d), "--runs", str(d / "runs"), "--out", str(tmp_path / "o")]
    assert compare.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"compare.py: error: --runs {d / 'runs'}: already holds {d / 'runs' / 'original' / 'grpo-seed0'}: "
                   "continue with --reuse (finished runs are read back), or give another --runs")


def test_two_comparisons_started_together_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(compare.time, "strftime", lambda fmt, *a: "20260101-120000")  # the same second
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        made = list(ex.map(lambda _: compare.fresh_folder("compare"), range(4)))
    assert sorted(p.name for p in made) == ["compare-20260101-120000", "compare-20260101-120000-2",
                                            "compare-20260101-120000-3", "compare-20260101-120000-4"]
    assert all(p.is_dir() for p in made)


def test_help_says_what_it_writes(capsys):
    with pytest.raises(SystemExit):
        compare.main(["--help"])
    out = capsys.readouterr().out
    assert "nothing under research/results/ unless --out names it" in out and "runs/compare-<time>/" in out
    assert "--out research/results" in out and "--overwrite" in out and report.TABLES_MD in out
