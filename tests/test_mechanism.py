"""research/mechanism.py: the push each method's advantages put on the path choice, and a run read step by step."""
import json
import sys

import pytest
import torch

from research import mechanism


def test_choice_push_is_the_gradient_on_the_choice_logits():
    torch.manual_seed(0)
    z = torch.randn(3, 4, requires_grad=True)  # 3 prompts, 4 choices (the last one outside the named paths)
    picks = torch.tensor([[0, 1, 1, 3], [2, 2, 0, 1], [3, 3, 3, 0]])  # (P, G = 4)
    adv = torch.randn(3, 4)  # not zero-sum in a group, as ARM's are not
    (adv * z.log_softmax(-1).gather(1, picks)).sum().backward()
    chose = torch.nn.functional.one_hot(picks, 4).float()[..., :3]  # choice 3 is "no path"
    push = mechanism.choice_push(adv, chose, z.softmax(-1).detach()[:, :3])
    assert torch.allclose(push, z.grad[:, :3], atol=1e-6)
    # by hand: two samples, advantages +1 / -1, choices 0 / 1, pi = (0.5, 0.5): +1 on 0, -1 on 1
    hand = mechanism.choice_push(torch.tensor([[1.0, -1.0]]), torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), torch.tensor([[0.5, 0.5]]))
    assert hand.tolist() == [[1.0, -1.0]]


def test_advantage_push_on_the_shipped_model():
    r = mechanism.advantage_push(("grpo", "arm"), prompts=16, seed=3)
    again = mechanism.advantage_push(("grpo", "arm"), prompts=16, seed=3)
    assert r == again  # the same samples, the same numbers
    grpo, arm = r["methods"]["grpo"], r["methods"]["arm"]
    cells = [c for t in grpo["mean_adv"].values() for p in t.values() for c in p.values()]
    assert sum(c["n"] for c in cells) == 16 * 8
    assert abs(sum(c["mean"] * c["n"] for c in cells)) < 1e-2  # GRPO's advantages sum to 0 in each group
    for p in r["paths"]:  # the paired difference is the difference of the pushes (same samples)
        assert abs(arm["vs_grpo"][p] - (arm["push"][p] - grpo["push"][p])) < 2e-5
        lo, hi = arm["push_ci"][p]
        assert lo <= arm["push"][p] <= hi
    # on the base model every correct ab gets less than under GRPO (its c(o|q) ~ 0.88 > c(q) ~ 0.43)
    assert arm["mean_adv"]["B"]["ab"]["correct"]["mean"] < grpo["mean_adv"]["B"]["ab"]["correct"]["mean"]


def _eval(step: int, n_correct: list[int], bc: int, total: int = 8, n: int = 4) -> dict:
    """A minimal train.evaluate line: n samples per prompt (4), `bc` of the `total` samples took bc."""
    return {"step": step, "n": n, "n_correct": n_correct,
            "paths": {"ab": {"correct": sum(n_correct), "wrong": total - bc - sum(n_correct)}, "bc": {"correct": 0, "wrong": bc}}}


def test_by_step_report_pairs_steps_within_runs_and_methods_by_seed(tmp_path):
    runs = {}
    for m, later in (("grpo", [0, 4]), ("arm", [2, 4])):  # at step 400 the first prompt is solved 0 / 2 times of 4
        for seed in (0, 1):
            out = tmp_path / f"{m}-seed{seed}"
            out.mkdir()
            lines = [_eval(200, [1, 4], bc=2), _eval(400, later, bc=1 if m == "arm" else 0)]
            (out / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
            runs.setdefault(m, []).append({"seed": seed, "out": str(out)})
    res = tmp_path / "results.json"
    res.write_text(json.dumps({"methods": {"base": {"runs": []}, **{m: {"runs": r} for m, r in runs.items()}}}))
    rep = mechanism.by_step_report(res, [200, 400], key="pass@4")
    assert rep["means"]["grpo"][200]["pass@4"]["mean"] == 1.0 and rep["means"]["grpo"][400]["pass@4"]["mean"] == 0.5
    assert rep["means"]["arm"][400]["pass@4"]["mean"] == 1.0
    assert rep["means"]["arm"][400]["bc_share"]["mean"] == 1 / 8
    assert rep["change"]["grpo"]["pass@4"]["mean"] == -0.5 and rep["change"]["arm"]["pass@4"]["mean"] == 0.0
    assert rep["minus_grpo"]["arm"][200]["pass@4"]["mean"] == 0.0 and rep["minus_grpo"]["arm"][400]["pass@4"]["mean"] == 0.5
    assert rep["change"]["arm"]["gap_vs_grpo"]["mean"] == 0.5
    # pass@1 at step 400, arm: prompts solved 2 and 4 times of 4 -> (0.5 + 1) / 2
    assert rep["means"]["arm"][400]["pass@1"]["mean"] == 0.75
    with pytest.raises(ValueError, match="no evaluation at step 300"):
        mechanism.runs_at_step(res, 300)


def _results_32(tmp_path):
    """A compare.py results.json of grpo and arm, 2 seeds, evaluated at steps 200 and 400 with n = 32
    samples per prompt (the CLI reads pass@32)."""
    runs = {}
    for m, later in (("grpo", [0, 32]), ("arm", [16, 32])):
        for seed in (0, 1):
            out = tmp_path / f"{m}-seed{seed}"
            out.mkdir()
            lines = [_eval(200, [8, 32], bc=8, total=64, n=32), _eval(400, later, bc=4 if m == "arm" else 0, total=64, n=32)]
            (out / "eval.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines))
            runs.setdefault(m, []).append({"seed": seed, "out": str(out)})
    res = tmp_path / "results.json"
    res.write_text(json.dumps({"methods": {"base": {"runs": []}, **{m: {"runs": r} for m, r in runs.items()}}}))
    return res


def test_by_step_prints_a_table_and_the_json_only_with_json(tmp_path, capsys):
    """The issue's case: --by-step printed about 200 lines of raw JSON, not the table research/README.md shows."""
    res = _results_32(tmp_path)
    assert mechanism.main(["--by-step", str(res), "--steps", "200,400"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| method | quantity | step 200 | step 400 | step 400 − step 200, paired |"
    assert "| grpo | pass@32 | 1.000 ± 0.000 | 0.500 ± 0.000 | -0.500 [-0.500, -0.500] |" in lines
    assert "| arm | `bc`'s share of samples, % | 12.5 ± 0.0 | 6.2 ± 0.0 | -6.2 [-6.2, -6.2] |" in lines
    assert "| arm − grpo | pass@32 | +0.000 [+0.000, +0.000] | +0.500 [+0.500, +0.500] | +0.500 [+0.500, +0.500] |" in lines
    assert len(lines) == 13 and lines[-1].startswith("(mean ± SD over 2 seeds")
    assert mechanism.main(["--by-step", str(res), "--steps", "200,400", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(mechanism.by_step_report(res, [200, 400])))
    assert mechanism.main(["--by-step", str(res), "--steps", "300"]) == 2
    assert capsys.readouterr().err.strip().endswith("eval.jsonl: no evaluation at step 300")


def test_push_out_never_replaces_a_file_without_overwrite(tmp_path, capsys, monkeypatch):
    kept = tmp_path / "push.json"
    kept.write_text("stored\n")
    monkeypatch.setattr(mechanism, "advantage_push", lambda **kw: pytest.fail("measured before the refusal"))
    assert mechanism.main(["--push", "--out", str(kept)]) == 2
    assert capsys.readouterr().err == (f"mechanism.py: error: --out {kept}: already exists; add --overwrite to replace "
                                       "it, or give another --out\n")
    assert kept.read_text() == "stored\n"
    fake = {"folder": "hidden-type", "prompts": 1, "group_size": 8, "paths": ["ab"],
            "methods": {"grpo": {"push": {"ab": 0.0}}}}
    monkeypatch.setattr(mechanism, "advantage_push", lambda **kw: fake)
    assert mechanism.main(["--push", "--out", str(kept), "--overwrite"]) == 0
    assert json.loads(kept.read_text()) == [fake]


def test_help_says_what_it_writes(capsys):
    with pytest.raises(SystemExit):
        mechanism.main(["--help"])
    assert "Writes nothing unless --out FILE" in " ".join(capsys.readouterr().out.split())


def _push(folder: str, grpo: float, arm: float) -> dict:
    return {"folder": folder, "prompts": 4, "group_size": 8, "seed": 0, "paths": ["ab", "bc"],
            "methods": {"grpo": {"push": {"ab": 0.0, "bc": grpo}},
                        "arm": {"push": {"ab": 0.0, "bc": arm}, "vs_grpo": {"ab": 0.0, "bc": arm - grpo}}}}


def test_across_seeds_groups_checkpoints_by_run_method_and_step(tmp_path, capsys):
    """Seeds of one run method at one step are pooled (mean, t-interval over seeds); the base model
    (any other name) stays one row at step 0."""
    pushes = [_push("toys/hidden-type-r20", 0.06, 0.05),
              _push("grpo-seed0/checkpoints/step_000400", -0.02, -0.01),
              _push("grpo-seed1/checkpoints/step_000400", -0.04, -0.01),
              _push("arm-seed0/checkpoints/step_000100", -0.01, 0.0)]
    s = mechanism.across_seeds(pushes)
    assert list(s) == ["arm", "grpo", "toys/hidden-type-r20"]
    g = s["grpo"][400]
    assert g["grpo"]["push"]["n"] == 2 and g["grpo"]["push"]["mean"] == pytest.approx(-0.03)
    assert g["arm"]["vs_grpo"]["mean"] == pytest.approx(0.02)
    # differences 0.01 and 0.03: SD 0.01 * sqrt(2), standard error 0.01, t(1 df) 12.706
    assert g["arm"]["vs_grpo"]["ci95"] == pytest.approx(12.706 * 0.01, rel=1e-3)
    assert s["toys/hidden-type-r20"][0]["arm"]["push"]["ci95"] is None
    f = tmp_path / "push.json"
    f.write_text(json.dumps(pushes))
    assert mechanism.main(["--across-seeds", str(f), "--methods", "grpo,arm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| policy | step | seeds | grpo's push on `bc` | arm's push on `bc` | arm − grpo |"
    assert lines[3].startswith("| grpo | 400 | 2 | -0.0300 [") and len(lines) == 6
    assert mechanism.main(["--across-seeds", str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.startswith("mechanism.py: error: --across-seeds ")


def test_figure_draws_a_column_per_run_and_never_replaces_a_file(tmp_path, capsys, monkeypatch):
    res = _results_32(tmp_path)
    data = json.loads(res.read_text())
    data["regime"] = "hidden-type-r20"
    data["methods"]["base"]["runs"] = [{"final": _eval(0, [8, 32], bc=8, total=64, n=32)}]
    res.write_text(json.dumps(data))
    png = tmp_path / "by_step.png"
    png.write_text("stored\n")
    assert mechanism.main(["--figure", str(png), str(res)]) == 2
    assert capsys.readouterr().err.startswith(f"mechanism.py: error: --figure {png}: already exists")
    assert png.read_text() == "stored\n"
    assert mechanism.main(["--figure", str(tmp_path / "b.png"), str(tmp_path / "missing.json")]) == 2
    assert "FileNotFoundError" in capsys.readouterr().err
    with monkeypatch.context() as m:  # a machine without requirements-plot.txt: said in one line, exit 1
        m.setitem(sys.modules, "matplotlib", None)
        assert mechanism.main(["--figure", str(tmp_path / "c.png"), str(res)]) == 1
        assert "matplotlib is missing" in capsys.readouterr().err and not (tmp_path / "c.png").exists()
    pytest.importorskip("matplotlib")
    assert mechanism.main(["--figure", str(png), str(res), str(res), "--overwrite"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_shares_pool_run_folders_by_method_per_step_and_type(tmp_path, capsys):
    def line(step, bc_b, bc_r):  # 10 samples on B and on R problems each; bc took bc_b and bc_r of them
        by_type = {"B": {"paths": {"ab": {"correct": 10 - bc_b, "wrong": 0, "conf_correct": 0.9},
                                   "bc": {"correct": bc_b, "wrong": 0, "conf_correct": 0.7 if bc_b else None}}},
                   "R": {"paths": {"ab": {"correct": 0, "wrong": 10 - bc_r}, "bc": {"correct": bc_r, "wrong": 0}}}}
        paths = {"ab": {"correct": 10 - bc_b, "wrong": 10 - bc_r}, "bc": {"correct": bc_b + bc_r, "wrong": 0}}
        return json.dumps({"step": step, "paths": paths, "by_type": by_type}) + "\n"
    for seed, (b, r) in enumerate([(2, 4), (0, 2)]):
        (tmp_path / f"arm-seed{seed}").mkdir()
        (tmp_path / f"arm-seed{seed}" / "eval.jsonl").write_text(line(25, b, r) + line(50, 0, 0))
    t = mechanism.shares_by_step([tmp_path / "arm-seed0", tmp_path / "arm-seed1"])
    assert t["arm"][25]["seeds"] == [0.3, 0.1] and t["arm"][25]["all"] == pytest.approx(0.2)
    assert t["arm"][25]["by_type"] == {"B": pytest.approx(0.1), "R": pytest.approx(0.3)}
    assert t["arm"][25]["conf_B"] == {"ab": pytest.approx(0.9), "bc": pytest.approx(0.7)}  # seed 1 had no correct bc
    assert t["arm"][50]["all"] == 0.0
    assert mechanism.main(["--shares", str(tmp_path / "arm-seed0"), str(tmp_path / "arm-seed1")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == "| arm | 25 | 2 | 20.0 | 10.0 / - / 30.0 | 30.0, 10.0 | 0.900 / 0.700 |"
    assert mechanism.main(["--shares", str(tmp_path / "nothing-seed0")]) == 2
