"""The built-in toy: task generator, path classifier, tokenizer, shipped model, miniature rebuild."""
import json
import random
from pathlib import Path

import pytest
import torch

from toys import build, tasks
from hf import load_model, load_tokenizer
from sampler import generate
from verifier import extract_answer, verify


def test_make_problems_is_deterministic_by_seed():
    a = tasks.make_problems(200, seed=3)
    assert a == tasks.make_problems(200, seed=3)
    assert a != tasks.make_problems(200, seed=4)
    assert tasks.make_problems(50, seed=3, split="heldout") == tasks.make_problems(50, seed=3, split="heldout")
    p = a[0]
    assert p["prompt"] == tasks.format_prompt(p["numbers"]) == "Q: " + "+".join(map(str, p["numbers"])) + "=?\nA: "
    assert p["answer"] == str(sum(p["numbers"]))
    assert len({q["prompt"] for q in a}) == len(a)  # distinct within a call


def test_train_and_heldout_never_overlap():
    key = lambda p: tuple(sorted(p["numbers"]))  # not even a reordering of a held-out problem
    train = {key(p) for seed in range(3) for p in tasks.make_problems(3000, seed, "train")}
    held = {key(p) for seed in range(3) for p in tasks.make_problems(1000, seed, "heldout")}
    assert train and held and not (train & held)
    assert all(tasks.split_of(k) == "heldout" for k in held)


def test_make_problems_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        tasks.make_problems(3, 0, split="test")
    with pytest.raises(ValueError, match="n must be"):
        tasks.make_problems(10**7, 0)


@pytest.mark.parametrize("style", tasks.STYLES)
def test_every_style_verifies_and_is_recognised(style):
    for p in tasks.make_problems(100, seed=1, split="heldout"):
        text = tasks.solution(p["numbers"], style)
        assert verify(text, p["answer"]), text
        assert not verify(text, str(int(p["answer"]) + 1))
        assert tasks.solution_path(text) == style
        assert tasks.solution_path(p["prompt"] + text) == style  # with the prompt still in front


def _corrupt(text: str, rng: random.Random) -> str:
    """Replace every result (and its copies further on) by a wrong number, as a model that
    mis-adds but copies faithfully would write it."""
    lines = text.split("\n")
    for i in range(len(lines) - 1):
        lhs, rhs = lines[i].split("=")  # lhs already holds the wrong copies of earlier results
        wrong = str(int(rhs) + rng.choice([1, 2, 9, 10, 11]))
        lines[i] = lhs + "=" + wrong
        for j in range(i + 1, len(lines) - 1):  # its copies in later lines' operands
            ops = lines[j].split("=")[0].split("+")
            lines[j] = "+".join(wrong if o == rhs else o for o in ops) + "=" + lines[j].split("=")[1]
    lines[-1] = "\\boxed{" + str(rng.randint(1, 400)) + "}"
    return "\n".join(lines)


@pytest.mark.parametrize("style", tasks.STYLES)
def test_classifier_survives_wrong_intermediate_numbers(style):
    rng = random.Random(0)
    for p in tasks.make_problems(100, seed=2):
        bad = _corrupt(tasks.solution(p["numbers"], style), rng)
        assert tasks.solution_path(bad) == style, bad


@pytest.mark.parametrize("text", ["", "hello", "23+48\n", "23+48=71\n17+5=22\n\\boxed{22}", "1+2+3=6\n\\boxed{6}",
                                  "23+48=71\n71+17=88\n88+1=89\n\\boxed{89}"])
def test_classifier_returns_none_for_other_shapes(text):
    assert tasks.solution_path(text) is None


def test_tokenizer_prompt_and_completion_tokenise_apart_as_together():
    rng = random.Random(0)
    tok = build.train_tokenizer([tasks.pretraining_text(rng) for _ in range(300)])
    assert tok.token_to_id(build.EOS) != tok.token_to_id(build.PAD)
    for p in tasks.make_problems(20, seed=0, split="heldout"):
        for style in tasks.STYLES:
            text = tasks.solution(p["numbers"], style)
            ids = tok.encode(p["prompt"]).ids + tok.encode(text).ids
            assert tok.encode(p["prompt"] + text).ids == ids
            assert tok.decode(ids) == p["prompt"] + text
    assert tok.token_to_id(build.UNK) not in tok.encode(tasks.pretraining_text(rng)).ids


def test_shipped_toy_loads_and_answers_in_a_box():
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "BUILD.json"} <= {
        f.name for f in tasks.toy_dir("original").iterdir()}
    model, tok = load_model(tasks.toy_dir("original")), load_tokenizer(tasks.toy_dir("original"))
    eos = tok.token_to_id(build.EOS)
    assert model.eos_token_ids == [eos]
    problems = tasks.make_problems(4, seed=0, split="heldout")
    prompts = [tok.encode(p["prompt"]).ids for p in problems]
    with torch.no_grad():  # same shapes twice: the second call runs on warm kernels
        greedy = generate(model, prompts, build.MAX_NEW_TOKENS, temperature=0.0, samples_per_prompt=4)
        sampled = generate(model, prompts, build.MAX_NEW_TOKENS, temperature=1.0, samples_per_prompt=4,
                           generator=torch.Generator().manual_seed(0))
    for out in (greedy, sampled):
        assert bool(out.finished.all())
        for row in range(out.tokens.shape[0]):
            text = tok.decode(out.tokens[row, :int(out.lengths[row]) - 1].tolist())
            assert text.endswith("}") and (extract_answer(text) or "").isdigit(), text
    greedy_texts = [tok.decode(greedy.tokens[4 * i, :int(greedy.lengths[4 * i]) - 1].tolist()) for i in range(4)]
    assert [tasks.solution_path(t) for t in greedy_texts] == ["left"] * 4  # the favourite style wins at T = 0
    stats = json.loads((tasks.toy_dir("original") / "BUILD.json").read_text())
    assert 0.2 <= stats["eval"]["pass@1"] <= 0.7
    assert all(stats["eval"]["style_freq"].get(s, 0) > 0 for s in tasks.STYLES)


def test_miniature_build_runs_and_reloads(tmp_path):
    logs = []
    stats = build.build_toy(tmp_path / "mini", seed=0, hidden_size=16, intermediate_size=32, num_layers=1,
                          num_heads=2, num_kv_heads=1, max_steps=2, batch_size=4, eval_every=1, eval_prompts=1,
                          eval_samples=8, final_prompts=1, final_samples=8, log=logs.append)
    assert stats["steps"] == 2 and [c["step"] for c in stats["curve"]] == [1, 2]
    assert set(stats["eval"]) >= {"pass@1", "pass@8", "style_freq", "style_acc", "finished"}
    assert abs(sum(stats["eval"]["style_freq"].values()) - 1) < 1e-9
    assert json.loads((tmp_path / "mini" / "BUILD.json").read_text()) == stats
    model = load_model(tmp_path / "mini")
    assert model.config.vocab_size == load_tokenizer(tmp_path / "mini").get_vocab_size()
    assert len(logs) == 4  # header, two checks, saved


def test_a_rebuild_goes_to_a_fresh_folder_and_replaces_a_shipped_toy_only_when_asked(tmp_path, monkeypatch, capsys):
    """python -m toys.build overwrote the shipped toys/<regime>/ on every run."""
    import shutil
    built = []

    def fake_build(out_dir=None, seed=0, *, regime="original", log=print, **settings):
        built.append((str(out_dir), regime, settings.get("init_from")))
        (Path(out_dir) / "BUILD.json").write_text("{}\n")

    monkeypatch.setattr(build, "build_toy", fake_build)
    monkeypatch.chdir(tmp_path)
    shipped = {p.name: p.read_bytes() for p in tasks.toy_dir("original").iterdir()}
    out = build.main([])
    assert out.parent == Path("runs") and out.name.startswith("build-original-") and built == [(str(out), "original", None)]
    assert "toys/original/ unchanged: --out toys/original --overwrite replaces the shipped model" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # the shipped folder, named without --overwrite: refused before building
        build.main(["--out", str(tasks.toy_dir("original"))])
    assert e.value.code == 2 and len(built) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"build.py: error: --out {tasks.toy_dir('original')}: already holds files (BUILD.json,")
    assert err.endswith("add --overwrite to replace that build, or give another --out\n") and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in tasks.toy_dir("original").iterdir()} == shipped
    copy = shutil.copytree(tasks.toy_dir("original"), tmp_path / "toy-copy")
    assert build.main(["--out", str(copy), "--overwrite"]) == copy and built[-1] == (str(copy), "original", None)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(SystemExit):  # --overwrite replaces a build, not any folder
        build.main(["--out", str(tmp_path / "notes"), "--overwrite"])
    assert "holds files but no build (no BUILD.json)" in capsys.readouterr().err
    out = build.main(["--toy", "hidden-type"])  # two stages: the first in a scratch folder, the second in the fresh one
    assert [b[1] for b in built[-2:]] == ["hidden-type"] * 2 and built[-1][0] == str(out) != built[-2][0]
    assert built[-1][2] == built[-2][0]


def test_build_help_says_what_it_writes(capsys):
    with pytest.raises(SystemExit):
        build.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Writes a fresh folder runs/build-<toy>-<time>/" in out and "--out toys/<toy> --overwrite" in out
