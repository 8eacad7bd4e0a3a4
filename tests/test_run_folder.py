"""A run folder's life (checkpoint.py) as a user meets it: runs never overwrite or mix, nothing is
created before the settings and data have passed, every mistake is one line, a corrupt checkpoint
is called corrupt and an intact earlier one is used."""
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import checkpoint
import config
import train
from train_helpers import write_jsonl

ROOT = Path(__file__).resolve().parents[1]



def argv(tiny, out, *extra):
    return ["--model", str(tiny[0]), "--data", str(tiny[1]), "--out", str(out), "--prompts-per-step", "2",
            "--group-size", "2", "--max-new-tokens", "6", "--eval-prompts", "0", "--lr", "3e-3", "--threads", "1",
            *extra]


def run(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = train.main(args)
    got = capsys.readouterr()
    return rc, got.out, got.err.strip()


def snapshot(folder: Path) -> dict:
    """Every file under a folder and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def two_step_run(tiny, tmp_path, capsys, mixed_rewards):
    """A finished 2-step run with a checkpoint after each step."""
    out = tmp_path / "run"
    assert run(argv(tiny, out, "--steps", "2", "--save-every", "1", "--keep-checkpoints", "0"), capsys)[0] == 0
    return out


# ---------------------------------------------------------------- --out


def test_an_out_that_holds_a_run_is_refused_and_left_as_it_was(tiny, two_step_run, capsys):
    before = snapshot(two_step_run)
    rc, _, err = run(argv(tiny, two_step_run, "--steps", "1"), capsys)
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"--out {two_step_run}: already holds files" in err and f"--resume {two_step_run}" in err
    assert "new --out" in err and "--overwrite" in err
    assert snapshot(two_step_run) == before  # metrics.jsonl still has its 2 lines, the checkpoints are the same


def test_overwrite_deletes_the_old_run_first(tiny, two_step_run, capsys, mixed_rewards):
    assert run(argv(tiny, two_step_run, "--steps", "1", "--overwrite"), capsys)[0] == 0
    assert steps(two_step_run) == [1]
    assert sorted(p.name for p in (two_step_run / "checkpoints").iterdir()) == ["step_000001"]  # no old step_2


def test_overwrite_never_deletes_a_folder_that_is_no_run_nor_the_run_being_resumed(tiny, two_step_run, tmp_path,
                                                                                   capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    rc, _, err = run(argv(tiny, mine, "--steps", "1", "--overwrite"), capsys)
    assert rc == 2 and "holds files but no train.py run" in err and (mine / "notes.txt").read_text() == "keep me"
    before = snapshot(two_step_run)
    rc, _, err = run(["--resume", str(two_step_run), "--overwrite"], capsys)
    assert rc == 2 and err == f"train.py: error: --overwrite: {two_step_run} is the run being resumed; it is not deleted"
    assert snapshot(two_step_run) == before


@pytest.mark.parametrize("where", ["below a file", "a file", "under /proc"])
def test_an_out_that_cannot_be_created_is_one_line(tiny, tmp_path, capsys, where):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = {"below a file": a_file / "run", "a file": a_file, "under /proc": Path("/proc/no-such-dir/run")}[where]
    if where == "under /proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    rc, _, err = run(argv(tiny, out, "--steps", "1"), capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith(f"train.py: error: --out {out}:"), err
    assert "Traceback" not in err


def test_nothing_is_created_before_the_data_has_passed(tiny, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "1+1=", "answer": "2"}] * 4 + ["{oops"])
    out = tmp_path / "new" / "run"
    rc, _, err = run(["--model", str(tiny[0]), "--data", str(bad), "--strict", "--out", str(out), "--eval-prompts", "0"],
                     capsys)
    assert rc == 2 and f"{bad}:5: malformed JSON" in err and "--strict" in err
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------- two runs at the same moment

# train.py in a process whose clock is stopped, and which creates its run folder only once both processes
# are ready to: both have checked runs/<timestamp> and found it free, the race two real runs can lose
BOTH_READY_THEN_TRAIN = """
import os, sys, time
from pathlib import Path
time.strftime = lambda *a: "20260101-120000"
import train
start_run_folder = train.start_run_folder
def when_both_are_ready(*args, **kwargs):
    Path(f"ready-{os.getpid()}").touch()
    deadline = time.time() + 60  # should the other process fail first
    while len(list(Path().glob("ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.01)
    return start_run_folder(*args, **kwargs)
train.start_run_folder = when_both_are_ready
sys.exit(train.main(sys.argv[1:]))
"""


def test_two_runs_started_in_the_same_second_get_a_folder_each(tiny, tmp_path):
    """Both find runs/<timestamp> free, then both create it: os.mkdir lets only one have it, and the
    other takes runs/<timestamp>-2. Before, both wrote into the one folder (two "step 1" lines)."""
    args = [a for a in argv(tiny, "x", "--steps", "1") if a not in ("--out", "x")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, "-c", BOTH_READY_THEN_TRAIN, *args], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    said = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], said
    runs = tmp_path / "runs"
    assert sorted(c.name for c in runs.iterdir()) == ["20260101-120000", "20260101-120000-2"]
    for folder in runs.iterdir():
        assert steps(folder) == [1]  # one run's step each
        assert sum(f"{Path('runs') / folder.name}: metrics.jsonl" in text for text in said) == 1, said


def test_a_new_folder_is_claimed_when_created_not_when_checked(tmp_path, monkeypatch):
    """The same race, step by step: two runs check the same name before either creates it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(checkpoint.time, "strftime", lambda *a: "20260101-120000")
    history = {"metrics": [], "evals": []}
    first, second = checkpoint.choose_run_folder("", None), checkpoint.choose_run_folder("", None)
    assert first == second == Path("runs/20260101-120000")
    assert checkpoint.start_run_folder(first, {"out": ""}, history) == Path("runs/20260101-120000")
    assert checkpoint.start_run_folder(second, {"out": ""}, history) == Path("runs/20260101-120000-2")
    out = tmp_path / "given"
    first, second = (checkpoint.choose_run_folder(str(out), None) for _ in range(2))
    checkpoint.start_run_folder(first, {"out": str(out), "seed": 1}, history)
    with pytest.raises(checkpoint.CheckpointError, match="another run started writing there at the same moment"):
        checkpoint.start_run_folder(second, {"out": str(out), "seed": 2}, history)
    assert json.loads((out / "config.json").read_text())["seed"] == 1  # the first run's folder, untouched


# ---------------------------------------------------------------- permissions


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_checkpoints_get_the_permissions_policy_gets(tiny, tmp_path, capsys, mixed_rewards, umask):
    """mkdtemp makes its folder 0700: renamed into place, a checkpoint was unreadable to the other users
    of a shared machine while policy/ was not. Both now follow the umask."""
    old = os.umask(umask)
    try:
        out = tmp_path / "run"
        assert run(argv(tiny, out, "--steps", "1"), capsys)[0] == 0
    finally:
        os.umask(old)
    folder, file = 0o777 & ~umask, 0o666 & ~umask
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    step = out / "checkpoints" / "step_000001"
    assert sorted(f.name for f in step.iterdir()) == ["config.json", "policy", "state.pt"]
    for d in (step, step / "policy", out / "policy"):
        assert oct(mode(d)) == oct(folder), d
        for f in d.iterdir():
            assert f.is_dir() or oct(mode(f)) == oct(file), f


# ---------------------------------------------------------------- exit codes


def test_every_exit_code_is_documented_in_help_and_readme():
    text = config.build_parser().format_help()
    readme = (ROOT / "README.md").read_text()
    for said in ("0 done", "1 failure", "2 bad input", "130 interrupted"):
        assert said in text and said in readme, said


# ---------------------------------------------------------------- --resume


def test_resume_refuses_flags_that_change_what_the_run_trains(two_step_run, tmp_path, capsys):
    before = snapshot(two_step_run)
    rc, _, err = run(["--resume", str(two_step_run), "--lr", "1e-3", "--toy", "equal-paths", "--steps", "4"], capsys)
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "--lr 0.001 (the run has 0.003)" in err and "--toy 'equal-paths' (the run has 'original')" in err
    assert "--steps" not in err.split(". On --resume")[0]  # --steps may change: it is not among the refused ones
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"group_size": 4}))
    rc, _, err = run(["--resume", str(two_step_run), "--config", str(cfg_file)], capsys)
    assert rc == 2 and f"{cfg_file}: group_size 4 (the run has 2)" in err, err
    assert snapshot(two_step_run) == before


def test_resume_may_extend_the_run_and_change_how_it_is_observed(two_step_run, capsys, mixed_rewards):
    rc, _, err = run(["--resume", str(two_step_run), "--steps", "3", "--eval-n", "2", "--save-every", "2",
                      "--threads", "1", "--micro-batch", "2", "--lr", "3e-3"], capsys)  # --lr as the run has it
    assert rc == 0, err
    assert steps(two_step_run) == [1, 2, 3]
    assert json.loads((two_step_run / "config.json").read_text())["lr"] == 3e-3


def test_resuming_an_older_checkpoint_into_its_own_run_is_refused(two_step_run, capsys):
    step1 = two_step_run / "checkpoints" / "step_000001"
    rc, _, err = run(["--resume", str(step1)], capsys)
    assert rc == 2 and "older than the run's newest checkpoint (step_000002)" in err and "new --out" in err


def test_an_older_checkpoint_branches_into_a_new_out(two_step_run, tmp_path, capsys, mixed_rewards):
    branch = tmp_path / "branch"
    rc, _, err = run(["--resume", str(two_step_run / "checkpoints" / "step_000001"), "--out", str(branch)], capsys)
    assert rc == 0, err
    assert steps(branch) == [1, 2] and steps(two_step_run) == [1, 2]


# ---------------------------------------------------------------- corrupt checkpoints

CORRUPT = {"random bytes": os.urandom(4096), "text": b"hello, this is not a checkpoint\n", "empty": b""}


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_a_corrupt_newest_checkpoint_is_skipped_and_named(two_step_run, capsys, mixed_rewards, kind):
    state2 = two_step_run / "checkpoints" / "step_000002" / "state.pt"
    state2.write_bytes(CORRUPT[kind])
    rc, out, err = run(["--resume", str(two_step_run), "--steps", "3"], capsys)
    assert rc == 0, err
    said = out + err
    assert f"resume: {state2}: corrupt" in said and "--upgrade" not in said
    assert f"resuming from the earlier {two_step_run / 'checkpoints' / 'step_000001'}" in said
    assert steps(two_step_run) == [1, 2, 3]  # step 2 trained again, then step 3


def test_resume_past_a_corrupt_checkpoint_reads_the_settings_of_the_one_it_continues(two_step_run, capsys, mixed_rewards):
    step2 = two_step_run / "checkpoints" / "step_000002"
    (step2 / "state.pt").write_bytes(b"")
    cfg2 = json.loads((step2 / "config.json").read_text())
    (step2 / "config.json").write_text(json.dumps({**cfg2, "lr": 0.5}))  # settings step 1 never had
    rc, out, err = run(["--resume", str(two_step_run), "--steps", "3"], capsys)
    assert rc == 0, err
    assert "resuming from the earlier" in out + err
    assert json.loads((two_step_run / "config.json").read_text())["lr"] == 3e-3  # step 1's, not the corrupt step 2's


@pytest.mark.parametrize("kind", sorted(CORRUPT))
def test_a_corrupt_checkpoint_named_itself_is_refused_and_not_sent_to_upgrade(two_step_run, capsys, kind):
    step2 = two_step_run / "checkpoints" / "step_000002"
    (step2 / "state.pt").write_bytes(CORRUPT[kind])
    rc, _, err = run(["--resume", str(step2), "--out", str(two_step_run.parent / "elsewhere")], capsys)
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith(f"train.py: error: resume: {step2 / 'state.pt'}: corrupt")
    assert "--upgrade" not in err
    assert checkpoint.main(["--upgrade", str(step2)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_no_intact_checkpoint_at_all_names_the_newest(two_step_run, capsys):
    for c in (two_step_run / "checkpoints").iterdir():
        (c / "state.pt").write_bytes(b"")
    rc, _, err = run(["--resume", str(two_step_run)], capsys)
    newest = two_step_run / "checkpoints" / "step_000002" / "state.pt"
    assert rc == 2 and err.startswith(f"train.py: error: resume: {newest}: corrupt") and "corrupt too" in err, err


# ---------------------------------------------------------------- names the user typed


def test_errors_name_the_flag_as_typed_or_the_file_and_key(tmp_path, capsys):
    rc, _, err = run(["--group-size", "1"], capsys)
    assert rc == 2 and err.startswith("train.py: error: --group-size (group_size): GRPO compares"), err
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"group-size": 1}))
    rc, _, err = run(["--config", str(f)], capsys)
    assert rc == 2 and err.startswith(f"train.py: error: {f}: group_size: GRPO compares"), err


def test_a_setting_refused_once_the_model_is_loaded_is_named_by_its_flag_and_nothing_is_created(tiny, tmp_path,
                                                                                                 capsys):
    out = tmp_path / "run"
    rc, _, err = run(argv(tiny, out, "--max-new-tokens", "255"), capsys)  # the tiny model has 256 positions
    assert rc == 2 and err.startswith("train.py: error: --max-new-tokens (max_new_tokens): prompt + 255 new tokens"), err
    assert not out.exists()
