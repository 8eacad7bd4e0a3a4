"""The hidden-type toy (toys/hidden_type.py, research/gates.py): types, built-in slips, the guess, the control's prompt, the gates' tools."""
import hashlib
import itertools
import json
import random

import pytest
import torch

from research import gates, methods
from toys import build, tasks
from toys import hidden_type as ht
from verifier import verify


def test_types_split_uniform_problems_35_15_50():
    counts = {"F": 0, "R": 0, "B": 0}
    for numbers in itertools.product(range(10, 100), repeat=3):
        counts[ht.type_of(numbers)] += 1
    assert {t: round(c / 90 ** 3, 10) for t, c in counts.items()} == ht.SHARES == {"F": 0.35, "R": 0.15, "B": 0.5}


@pytest.mark.parametrize("numbers", [(20, 21, 11), (22, 47, 16), (22, 47, 15), (20, 21, 12), (35, 65, 10), (99, 98, 96)])
def test_each_path_is_right_exactly_where_its_type_says(numbers):
    t, gold = ht.type_of(numbers), ht.answer(numbers)
    for path in ("ab", "bc"):
        text = ht.solution(numbers, path)
        assert tasks.solution_path(text) == path  # the shape is recognised, bonus line or not
        assert verify(text, str(gold)) == (t in ht.VALID[path])
    guess = ht.solution(numbers, "guess")
    assert tasks.solution_path(guess) == "guess"
    assert verify(guess, str(ht.guess_of(gold))) and verify(guess, str(gold)) == (gold % 10 == 0)


def test_the_operation_and_the_written_work_by_hand():
    # 20+21 = 41 ends in 1: ab's bonus; 21+11 = 32 ends in 2: none. a#b#c = 52 + 10 = 62: F
    assert ht.answer((20, 21, 11)) == 62 and ht.type_of((20, 21, 11)) == "F"
    assert ht.solution((20, 21, 11), "ab") == "ab\n20+21=41\n41+10=51\n51+11=62\n\\boxed{62}"
    assert ht.solution((20, 21, 11), "bc") == "bc\n21+11=32\n32+20=52\n\\boxed{52}"  # bc never sees a+b
    # 22+47 = 69 ends in 9: none; 47+16 = 63 ends in 3: bc's bonus. 85 + 10 = 95: R
    assert ht.answer((22, 47, 16)) == 95 and ht.type_of((22, 47, 16)) == "R"
    assert ht.solution((22, 47, 16), "ab") == "ab\n22+47=69\n69+16=85\n\\boxed{85}"
    assert ht.solution((22, 47, 16), "bc") == "bc\n47+16=63\n63+10=73\n73+22=95\n\\boxed{95}"
    # 20+23 = 43 ends in 3 and 23+15 = 38 ends in 8: both conditions, one bonus of 10: B
    assert ht.type_of((20, 23, 15)) == "B" and ht.answer((20, 23, 15)) == 68
    assert ht.solution((20, 23, 15), "bc") == "bc\n23+15=38\n38+10=48\n48+20=68\n\\boxed{68}"
    assert ht.solution((22, 47, 16), "guess") == "guess\n\\boxed{100}"
    assert ht.guess_of(85) == 90 and ht.guess_of(84) == 80 and ht.guess_of(80) == 80


def test_guess_shape_and_unknown_path():
    assert tasks.solution_path("guess\n\\boxed{90}") == "guess"
    assert tasks.solution_path("guess\n\\boxed{9x}") is None
    assert tasks.solution_path("guess\n12+3=15\n\\boxed{15}") is None
    with pytest.raises(ValueError, match="path must be"):
        ht.solution((10, 11, 12), "ac")


def test_control_asks_the_same_problems_with_the_type_written():
    hidden = tasks.make_problems(40, 3, "heldout", "hidden-type")
    shown = tasks.make_problems(40, 3, "heldout", "shown-type")
    assert [p["numbers"] for p in hidden] == [p["numbers"] for p in shown]
    for h, s in zip(hidden, shown):
        assert h["type"] == s["type"] == ht.type_of(h["numbers"])
        assert h["answer"] == s["answer"] == str(ht.answer(h["numbers"]))
        assert h["prompt"] == "Q: " + "#".join(map(str, h["numbers"])) + "=?\nA: "
        assert s["prompt"] == h["prompt"].replace("=?\n", f"=? type {h['type']}\n")


def test_pretraining_documents_run_every_path_on_every_type():
    rng = random.Random(0)
    seen = set()
    for _ in range(1500):
        text = tasks.pretraining_text(rng, "hidden-type")
        prompt, completion = text.split("A: ", 1)
        numbers = tuple(int(x) for x in prompt[3:prompt.index("=")].split("#"))
        assert completion == ht.solution(numbers, completion.split("\n")[0])
        seen.add((completion.split("\n")[0], ht.type_of(numbers)))
    assert seen == {(p, t) for p in ("ab", "bc", "guess") for t in ht.TYPES}


def test_slips_learnt_rule():
    good = {"ab": {"F": 0.95, "R": 0.0, "B": 0.92}, "bc": {"F": 0.05, "R": 0.9, "B": 1.0}}
    assert build.slips_learnt(good)
    assert not build.slips_learnt({**good, "ab": {"F": 0.95, "R": 0.06, "B": 0.92}})  # the slip not yet learnt
    assert not build.slips_learnt({**good, "bc": {"F": 0.0, "R": 0.89, "B": 1.0}})  # a valid cell too weak


def test_auc_by_hand_and_probes_on_known_data():
    assert gates.auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75
    assert gates.auc(torch.tensor([1.0, 1.0]), torch.tensor([0, 1])) == 0.5  # a tie counts half
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    linear = (x[:, 0] > 0).long()
    xor = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()
    assert gates.probe(x, linear) > 0.95
    assert gates.probe(x, xor) < 0.65  # no line separates an XOR ...
    assert gates.probe(x, xor, hidden=64, steps=1000) > 0.85  # ... a small MLP does


def test_pilot_figures_and_gates_by_hand():
    paths = lambda ab, bc, guess: {"ab": {"correct": ab[0], "wrong": ab[1]}, "bc": {"correct": bc[0], "wrong": bc[1]},
                                   "guess": {"correct": guess[0], "wrong": guess[1]}}
    base = {"n": 32, "pass@k": {"1": 0.40, "32": 0.99}}
    after = {"n": 32, "pass@k": {"1": 0.70, "32": 0.85},
             "by_type": {"F": {"paths": paths((90, 0), (0, 10), (0, 0))}, "R": {"paths": paths((0, 88), (12, 0), (0, 0))}}}
    f = gates.pilot_figures(after, base)
    assert f == {"pass@1_rise": 0.3, "pass@32_fall": 0.14, "bc_share_R": 0.12, "bc_share_F": 0.1, "ab_acc_R": 0.0,
                 "routing": 0.02}
    assert all(gates.pilot_verdicts(f).values())
    assert not gates.pilot_verdicts({**f, "routing": 0.3})["no_routing(|bc_R-bc_F|<=0.05)"]



def test_gates_cli_writes_to_runs_and_the_build_json_only_when_asked(tmp_path, monkeypatch, capsys):
    """python -m research.gates rewrote the shipped toys/<toy>/BUILD.json on every run."""
    import json
    import shutil
    shipped = tasks.toy_dir("hidden-type") / "BUILD.json"
    before = shipped.read_bytes()
    fake = {"verdicts": {"valid_T1>=0.7": True}}
    measured = []
    monkeypatch.setattr(gates, "gates", lambda regime, folder=None: measured.append(str(folder)) or fake)
    monkeypatch.chdir(tmp_path)
    assert gates.main([]) == 0
    [written] = (tmp_path / "runs").glob("gates-hidden-type-*/gates.json")
    assert json.loads(written.read_text()) == fake and shipped.read_bytes() == before
    assert f"written to {written.relative_to(tmp_path)} ({shipped} unchanged" in capsys.readouterr().out
    build_copy = shutil.copytree(tasks.toy_dir("hidden-type"), tmp_path / "rebuild")
    assert gates.main(["--model", str(build_copy), "--write-build-json"]) == 0
    stored = json.loads((build_copy / "BUILD.json").read_text())
    assert stored["gates"] == fake and {k: v for k, v in stored.items() if k != "gates"} == \
        {k: v for k, v in json.loads(before).items() if k != "gates"}
    assert shipped.read_bytes() == before and measured[-1] == str(build_copy)
    (build_copy / "BUILD.json").unlink()  # no BUILD.json to write into: refused before the measuring
    assert gates.main(["--model", str(build_copy), "--write-build-json"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gates.py: error: --write-build-json: {build_copy / 'BUILD.json'}: cannot read it")
    assert err.count("\n") == 1 and len(measured) == 2


def test_gates_help_says_what_it_writes(capsys):
    with pytest.raises(SystemExit):
        gates.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Writes them to a fresh runs/gates-<toy>-<time>/gates.json; only --write-build-json stores them" in out


# ---------------------------------------------------------------- hidden-type-r20: bc's bonus on one more digit
R20 = tasks.REGIMES["hidden-type-r20"]["bc_digits"]


def test_r20_types_split_uniform_problems_30_20_50():
    assert R20 == {0, 3, 5, 8} and tasks.REGIMES["hidden-type"]["bc_digits"] == ht.BC_DIGITS == {3, 5, 8}
    counts = {"F": 0, "R": 0, "B": 0}
    for numbers in itertools.product(range(10, 100), repeat=3):
        counts[ht.type_of(numbers, bc_digits=R20)] += 1
    shares = {t: round(c / 90 ** 3, 10) for t, c in counts.items()}
    assert shares == {"F": 0.3, "R": 0.2, "B": 0.5}  # so ab is right on 80 %, bc on 70 %
    assert round(shares["F"] + shares["B"], 10) == 0.8 and round(shares["R"] + shares["B"], 10) == 0.7


def test_r20_by_hand():
    # 25+31 = 56 ends in 6: no ab bonus; 31+19 = 50 ends in 0: bc's bonus under r20 only. R (r20), B (hidden-type)
    assert ht.answer((25, 31, 19), bc_digits=R20) == 85 and ht.type_of((25, 31, 19), bc_digits=R20) == "R"
    assert ht.answer((25, 31, 19)) == 75 and ht.type_of((25, 31, 19)) == "B"  # neither condition
    assert ht.solution((25, 31, 19), "ab", bc_digits=R20) == ht.solution((25, 31, 19), "ab") == \
        "ab\n25+31=56\n56+19=75\n\\boxed{75}"  # ab never sees b+c: the same work, now wrong
    assert ht.solution((25, 31, 19), "bc", bc_digits=R20) == "bc\n31+19=50\n50+10=60\n60+25=85\n\\boxed{85}"
    assert ht.solution((25, 31, 19), "bc") == "bc\n31+19=50\n50+25=75\n\\boxed{75}"
    assert ht.solution((25, 31, 19), "guess", bc_digits=R20) == "guess\n\\boxed{90}"
    assert ht.format_prompt((25, 31, 19), True, bc_digits=R20) == "Q: 25#31#19=? type R\nA: "
    # 20+21 = 41 ends in 1: ab's bonus; 21+19 = 40 ends in 0: bc's too under r20, one bonus of 10.
    # B (r20), F (hidden-type)
    assert ht.type_of((20, 21, 19), bc_digits=R20) == "B" and ht.type_of((20, 21, 19)) == "F"
    assert ht.answer((20, 21, 19), bc_digits=R20) == ht.answer((20, 21, 19)) == 70
    assert ht.solution((20, 21, 19), "bc", bc_digits=R20) == "bc\n21+19=40\n40+10=50\n50+20=70\n\\boxed{70}"
    # b+c ends in 3, 5 or 8 as before: the same in both regimes
    assert ht.type_of((22, 47, 16), bc_digits=R20) == "R" and ht.answer((22, 47, 16), bc_digits=R20) == 95
    for numbers in [(25, 31, 19), (20, 21, 19), (22, 47, 16), (20, 21, 11), (35, 65, 10), (99, 98, 96)]:
        t, gold = ht.type_of(numbers, bc_digits=R20), ht.answer(numbers, bc_digits=R20)
        for path in ("ab", "bc"):
            text = ht.solution(numbers, path, bc_digits=R20)
            assert tasks.solution_path(text) == path and verify(text, str(gold)) == (t in ht.VALID[path])


def test_r20_problems_documents_and_types_follow_its_digits():
    r20 = tasks.make_problems(300, 1, "heldout", "hidden-type-r20")
    hidden = tasks.make_problems(300, 1, "heldout", "hidden-type")
    assert [p["numbers"] for p in r20] != [p["numbers"] for p in hidden]  # its own random stream
    assert r20 == tasks.make_problems(300, 1, "heldout", "hidden-type-r20")
    for p in r20:
        assert p["type"] == ht.type_of(p["numbers"], bc_digits=R20)
        assert p["answer"] == str(ht.answer(p["numbers"], bc_digits=R20))
        assert p["prompt"] == "Q: " + "#".join(map(str, p["numbers"])) + "=?\nA: "
    assert any(ht.type_of(p["numbers"], bc_digits=R20) != ht.type_of(p["numbers"]) for p in r20)
    by_type = tasks.problems_by_type(20, 3, "hidden-type-r20")
    assert all(ht.type_of(p["numbers"], bc_digits=R20) == t for t, ps in by_type.items() for p in ps)
    rng = random.Random(0)
    for _ in range(300):
        text = tasks.pretraining_text(rng, "hidden-type-r20")
        prompt, completion = text.split("A: ", 1)
        numbers = tuple(int(x) for x in prompt[3:prompt.index("=")].split("#"))
        assert completion == ht.solution(numbers, completion.split("\n")[0], bc_digits=R20)


def test_hidden_type_and_its_control_are_unchanged_by_r20():
    """The problems, documents and per-type draws of hidden-type and shown-type, pinned from before r20."""
    pinned = {"hidden-type": "8aaeaacc18660fef34d8d91c191bb1baf14b73306ed5d9701875aa9c6f450268",
              "shown-type": "31930cb2d0df2b64916bf59bc42be14c2a0d4a43b14f27cdbf313272e588acba"}
    assert tasks.make_problems(2, 0, "heldout", "hidden-type") == [
        {"prompt": "Q: 70#23#76=?\nA: ", "answer": "179", "numbers": [70, 23, 76], "type": "F"},
        {"prompt": "Q: 23#42#22=?\nA: ", "answer": "87", "numbers": [23, 42, 22], "type": "B"}]
    for regime, digest in pinned.items():
        h = hashlib.sha256()
        for split in ("train", "heldout"):
            h.update(json.dumps(tasks.make_problems(300, 1, split, regime)).encode())
        rng = random.Random(2)
        h.update("".join(tasks.pretraining_text(rng, regime) for _ in range(300)).encode())
        h.update(json.dumps(tasks.problems_by_type(20, 3, regime)).encode())
        assert h.hexdigest() == digest, regime


def test_r20_builds_plans_and_gates_as_hidden_type():
    assert build.BUILDS["hidden-type-r20"] == build.BUILDS["hidden-type"]
    assert build.STAGE2["hidden-type-r20"] == build.STAGE2["hidden-type"]
    assert methods.PLANS["hidden-type"] == (methods.HIDDEN_METHODS, methods.HIDDEN_RUN)
    # r20's plan is its registered design (research/results/PREDICTIONS.md addendum 5 part 2): four of hidden-type's
    # methods, hidden-type's settings run to 400 steps and evaluated every 100
    r20_methods, r20_run = methods.PLANS["hidden-type-r20"]
    assert r20_methods == ("grpo", "arm", "arm-centred", "unlikely") and set(r20_methods) < set(methods.HIDDEN_METHODS)
    assert r20_run == {**methods.HIDDEN_RUN, "steps": 400, "eval_every": 100}
    keep = ("low", "high", "paths", "shares", "tagged", "typed")
    assert {k: tasks.REGIMES["hidden-type-r20"][k] for k in keep} == {k: tasks.REGIMES["hidden-type"][k] for k in keep}
    cell = {p: {t: 1.0 if t in ht.VALID[p] else 0.0 for t in ht.TYPES} for p in ht.VALID}
    g = {"forced_T1": cell, "forced_T0.05": cell,
         "choice": {t: {"ab": 0.35, "bc": 0.10, "guess": 0.55} for t in ht.TYPES},
         "base_pass": {"all": {"pass@1": 0.4, "pass@32": 1.0}, "R": {"pass@32": 0.95}},
         "probes": {"linear": [0.5, 0.6]}}
    assert gates.verdicts(g, "hidden-type-r20") == gates.verdicts(g) and all(gates.verdicts(g).values())
