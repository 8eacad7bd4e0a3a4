"""Whole runs of train.py on a tiny random model: resume equivalence, NaN guard, Ctrl-C, outputs."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import config
import train

ROOT = Path(__file__).resolve().parents[1]




def argv(tiny, out, *extra):
    return ["--model", str(tiny[0]), "--data", str(tiny[1]), "--out", str(out), "--prompts-per-step", "3",
            "--group-size", "4", "--max-new-tokens", "8", "--micro-batch", "5", "--eval-prompts", "2", "--eval-n", "4",
            "--lr", "3e-3", "--warmup-steps", "2", "--threads", "1", *extra]


def weights(run: Path) -> dict:
    return load_file(str(run / "policy" / "model.safetensors"))


def metrics(run: Path, drop=("time_s", "elapsed_s", "t_rollout", "t_reward", "t_conf", "t_update")) -> list[dict]:
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tiny, tmp_path, mixed_rewards):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main(argv(tiny, a, "--steps", "3", "--save-every", "1", "--keep-checkpoints", "0",
                           "--epochs", "2", "--mini-batches", "2", "--eval-every", "1")) == 0
    assert sorted(p.name for p in (a / "checkpoints").iterdir()) == ["step_000001", "step_000002", "step_000003"]
    # "killed" after step 1: a fresh run folder holding only that checkpoint (and a half-written one)
    shutil.copytree(a / "checkpoints" / "step_000001", b / "checkpoints" / "step_000001")
    (b / "checkpoints" / ".tmp-step_000002-x").mkdir()
    (b / "checkpoints" / "step_000002").mkdir()  # no state.pt: never complete, never used
    assert train.main(["--resume", str(b)]) == 0
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma, mb = metrics(a), metrics(b)
    assert len(ma) == 3 and ma == mb
    assert any(m["grad_norm"] > 0 for m in ma) and any(m["clip_low_frac"] + m["clip_high_frac"] > 0 for m in ma)
    ea, eb = (a / "eval.jsonl").read_text(), (b / "eval.jsonl").read_text()
    assert ea == eb and len(ea.splitlines()) == 4  # before, after steps 1 and 2, and the final one


def test_grpo_is_arm_with_alpha_zero_for_a_whole_run(tiny, tmp_path, mixed_rewards):
    g, a = tmp_path / "grpo", tmp_path / "arm0"
    assert train.main(argv(tiny, g, "--steps", "2", "--algo", "grpo", "--no-eval-before")) == 0
    assert train.main(argv(tiny, a, "--steps", "2", "--algo", "arm", "--alpha", "0", "--no-eval-before")) == 0
    wg, wa = weights(g), weights(a)
    assert all(torch.equal(wg[k], wa[k]) for k in wg)
    assert metrics(g) == metrics(a)
    # and ARM with alpha > 0 does move differently
    r = tmp_path / "arm"
    assert train.main(argv(tiny, r, "--steps", "2", "--alpha", "1", "--no-eval-before")) == 0
    assert not all(torch.equal(wg[k], weights(r)[k]) for k in wg)
    assert all(m["arm_shift_abs_mean"] > 0 and m["conf_q_mean"] > 0 for m in metrics(r))


def test_outputs_of_a_run_and_its_config_reruns_it(tiny, tmp_path, mixed_rewards, capsys):
    out = tmp_path / "run"
    assert train.main(argv(tiny, out, "--steps", "2", "--kl-coef", "0.1")) == 0
    printed = capsys.readouterr().out
    assert "| pass@1 |" in printed and "| pass@4 |" in printed and "| entropy |" in printed
    m = metrics(out, drop=())
    for key in ["step", "reward", "accuracy", "entropy", "response_len", "clip_low_frac", "clip_high_frac",
                "arm_shift_mean", "conf_o_mean", "conf_o_std", "grad_norm", "adv_abs_mean", "zero_adv_frac",
                "equal_reward_groups", "truncated", "empty", "time_s", "kl"]:
        assert key in m[0], key
    assert [r["step"] for r in m] == [1, 2] and m[-1]["kl"] > 0
    ev = [json.loads(l) for l in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in ev] == [0, 2] and list(ev[0]["pass@k"]) == ["1", "2", "4"]
    assert all(e["pass@k"]["1"] <= e["pass@k"]["2"] <= e["pass@k"]["4"] for e in ev)
    from hf import load_model
    load_model(out / "policy")  # a Hugging Face folder again
    cfg, _ = config.parse_command_line(["--config", str(out / "config.json"), "--steps", "5"])
    assert cfg.steps == 5 and cfg.kl_coef == 0.1 and cfg.model == str(tiny[0])


def test_reference_model_is_loaded_only_with_a_kl_term(tiny, tmp_path, monkeypatch):
    loads = []
    real = train.load_model
    monkeypatch.setattr(train, "load_model", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    train.main(argv(tiny, tmp_path / "a", "--steps", "1", "--eval-prompts", "0"))
    assert len(loads) == 1
    train.main(argv(tiny, tmp_path / "b", "--steps", "1", "--eval-prompts", "0", "--kl-coef", "0.05"))
    assert len(loads) == 3


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch, capsys,
                                                                           mixed_rewards):
    real = train.arm.policy_loss
    calls = {"n": 0}

    def poisoned(*a, **k):
        loss, stats = real(*a, **k)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 3 else loss), stats  # 3 micro-batches per step

    monkeypatch.setattr(train.arm, "policy_loss", poisoned)
    out = tmp_path / "run"
    rc = train.main(argv(tiny, out, "--steps", "4", "--save-every", "1", "--eval-prompts", "0"))
    err = capsys.readouterr().err
    assert rc == 1 and "step 2: the loss is nan" in err and "step_000001" in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000001"]
    assert len(metrics(out)) == 1


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resumes_bit_identically(tiny, tmp_path, mixed_rewards):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    mixed = ("import runpy, verifier; verifier.verify = lambda response, gold: len(response) % 2 == 0; "  # as mixed_rewards
             f"runpy.run_path({str(ROOT / 'train.py')!r}, run_name='__main__')")
    p = subprocess.Popen([sys.executable, "-c", mixed, *argv(tiny, out, "--steps", "10000", "--eval-prompts", "0")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and p.poll() is None and not (
            (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text()):
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    text, _ = p.communicate(timeout=60)
    assert p.returncode == 130, text  # stopped early, and a script can tell: the shell's code for Ctrl-C
    steps = len(metrics(out))
    assert f"interrupted at step {steps}: checkpoint {out / 'checkpoints' / f'step_{steps:06d}'}; continue with " \
           f"--resume {out}" in text and (out / "checkpoints" / f"step_{steps:06d}" / "state.pt").is_file()
    assert train.main(["--resume", str(out), "--steps", str(steps + 1)]) == 0
    whole = tmp_path / "whole"
    assert train.main(argv(tiny, whole, "--steps", str(steps + 1), "--eval-prompts", "0")) == 0
    wa, wb = weights(whole), weights(out)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert metrics(whole) == metrics(out) and any(m["grad_norm"] > 0 for m in metrics(out))


def test_real_model_path_gsm8k_jsonl_with_the_qwen_chat_template(tiny, tmp_path, mixed_rewards):
    """What a Qwen2.5 + GSM8K run does, on a tiny qwen2-layout model: chat template, <|im_end|> ends a turn."""
    rows = [{"question": f"Tom has {i} apples and buys {i + 2}. How many?", "answer": f"{i} + {i + 2}\n#### {2 * i + 2}"}
            for i in range(12)]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    assert train.main(["--model", str(tiny[0]), "--data", str(data), "--template", "qwen-chat", "--out", str(out),
                       "--steps", "2", "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "6",
                       "--micro-batch", "3", "--eval-prompts", "2", "--eval-n", "2", "--threads", "1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["template"] == "qwen-chat" and cfg["algo"] == "arm"
    ev = [json.loads(l) for l in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["prompts"] for e in ev] == [2, 2] and "distinct_correct" in ev[0]


def test_main_job_path_on_the_shipped_toy(tmp_path, capsys):
    """`python train.py` in miniature: the toy model and task, distinct solution paths from toys.tasks.solution_path."""
    out = tmp_path / "run"
    assert train.main(["--steps", "1", "--prompts-per-step", "2", "--group-size", "4", "--micro-batch", "8",
                       "--eval-prompts", "4", "--eval-n", "4", "--out", str(out), "--threads", "1"]) == 0
    ev = [json.loads(l) for l in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in ev] == [0, 1] and ev[0]["truncated"] == 0  # the toy always ends its answers
    assert ev[0]["accuracy"] > 0 and 1 <= ev[0]["distinct_correct"] <= 4  # four styles at most
    m = metrics(out)[0]
    assert m["conf_q_mean"] > 0 and m["response_len"] > 3
    assert "| pass@4 |" in capsys.readouterr().out


def old_layout(state_pt: Path) -> None:
    """Rewrite a state.pt as train.py wrote it before checkpoint.py: Python's and numpy's RNG states
    pickled as random.getstate() and np.random.get_state() return them (a tuple, a numpy array)."""
    import numpy as np

    s = torch.load(state_pt, weights_only=True)
    version, internal, gauss = s["rng"]["python"]
    name, keys, pos, has_gauss, cached = s["rng"]["numpy"]
    s["rng"]["python"] = (version, tuple(internal), gauss)
    s["rng"]["numpy"] = (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)
    torch.save(s, state_pt)


def test_old_layout_checkpoint_is_refused_then_upgraded_and_resumes_bit_identically(tiny, tmp_path, capsys,
                                                                                     mixed_rewards):
    import checkpoint

    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main(argv(tiny, a, "--steps", "2", "--save-every", "1", "--keep-checkpoints", "0")) == 0
    shutil.copytree(a / "checkpoints" / "step_000001", b / "checkpoints" / "step_000001")
    step1 = b / "checkpoints" / "step_000001"
    old_layout(step1 / "state.pt")
    capsys.readouterr()
    assert train.main(["--resume", str(b)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not loaded" in err and f"python checkpoint.py --upgrade {step1}" in err
    assert checkpoint.main(["--upgrade", str(step1)]) == 0
    torch.load(step1 / "state.pt", weights_only=True)
    assert train.main(["--resume", str(b)]) == 0
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa) and metrics(a) == metrics(b)


class RunsCode:
    """Unpickling this creates a file: what a tampered state.pt could do with weights_only=False."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (str(self.marker),)


@pytest.mark.parametrize("payload", ["code", "garbage", "not a dict"])
def test_tampered_state_is_refused_in_one_line_and_runs_nothing(tiny, tmp_path, capsys, payload):
    run = tmp_path / "run"
    assert train.main(argv(tiny, run, "--steps", "1", "--eval-prompts", "0")) == 0
    state = run / "checkpoints" / "step_000001" / "state.pt"
    marker = tmp_path / "pwned"
    if payload == "code":
        s = torch.load(state, weights_only=True)
        s["history"]["metrics"].append(RunsCode(marker))
        torch.save(s, state)
    elif payload == "garbage":
        state.write_bytes(b"\x00not a torch file")
    else:
        torch.save([1, 2, 3], state)
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"train.py: error: resume: {state}:"), err
    assert not marker.exists()


def test_every_evaluation_shows_a_progress_bar(tiny, tmp_path, capsys):
    assert train.main(argv(tiny, tmp_path / "run", "--steps", "1")) == 0
    err = capsys.readouterr().err
    assert "eval at step 0" in err and "eval at step 1" in err and "train" in err
