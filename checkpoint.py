"""The run folder's life on disk: where a run writes, resuming, atomic checkpoints, JSONL logs, Ctrl-C.

    runs/<timestamp>/                       (or --out)
        config.json                         the run's settings; on --resume, the truth (config.py)
        metrics.jsonl, eval.jsonl           one line per step, one per evaluation
        checkpoints/step_NNNNNN/            policy/, state.pt, config.json; renamed into place complete,
                                            readable as policy/ is (0755/0644 under umask 022)
        policy/                             the final policy, a Hugging Face folder

A run never writes into a folder that holds another run: choose_run_folder refuses it (unless
--overwrite, which deletes that run first), and it is only created, by start_run_folder, after the
settings, the data and the model have passed, and atomically: two runs started at the same moment
never share a folder (the second gets runs/<timestamp>-2, or is refused for the same --out). Resuming a
run folder picks its newest checkpoint whose state.pt reads (resume_point): a corrupt newer one is
skipped and named.

state.pt holds only tensors, lists, dicts, strings and numbers (the optimizer and scheduler states,
the RNG states, the history of metrics), so resuming loads it with torch.load(weights_only=True): a
checkpoint folder from someone else cannot run code on this machine. Checkpoints written before
this layout kept numpy's and Python's RNG states as pickled objects; they are refused, and

    python checkpoint.py --upgrade runs/<run>/checkpoints/step_N     # only for a checkpoint you trust

rewrites one in place (it unpickles it once), after which it resumes bit-identically.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import re
import secrets
import signal
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from hf import save_model

STATE_KEYS = ("step", "data_pos", "optimizer", "scheduler", "rng", "history")


class CheckpointError(ValueError):
    """A checkpoint we cannot or will not resume from, or a run folder we will not write into; the
    message is one line naming the path."""


class CorruptCheckpointError(CheckpointError):
    """A state.pt that is damaged (empty, truncated, not a torch file): not one to --upgrade."""


# ----------------------------------------------------------------------------------------------
# where a run writes


RUN_FILES = ("config.json", "metrics.jsonl", "eval.jsonl", "checkpoints", "policy")  # what train.py writes


def new_run_dir(stamp: str = "") -> Path:
    """runs/<stamp> (by default the time now, as 20260101-120000), with -2, -3, ... if that folder exists."""
    base = Path("runs") / (stamp or time.strftime("%Y%m%d-%H%M%S"))
    p, i = base, 2
    while p.exists():
        p, i = Path(f"{base}-{i}"), i + 1
    return p


def make_fresh_folder(base: Path) -> Path:
    """Create the folder `base`, or base-2, base-3, ... if it exists, and return it. os.mkdir fails on an
    existing folder, so two commands started in the same second never share one (train.py's run folders,
    and the comparisons, gates and builds under runs/)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    path, i = base, 2
    while True:
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            path, i = Path(f"{base}-{i}"), i + 1


def make_run_dir(path: Path) -> Path:
    """Create the new folder runs/<timestamp> chosen by new_run_dir and return it, or, if another run
    created it since (two runs started in the same second), the next free <timestamp>-2, -3, ..."""
    return make_fresh_folder(path.parent / "-".join(path.name.split("-")[:2]))  # the same timestamp, less any -N


def choose_run_folder(out: str, ckpt: Path | None, resume: str = "", overwrite: bool = False) -> Path:
    """The folder a run writes to, checked but not created: --out, else the resumed run's folder,
    else runs/<timestamp>. Refused in one line: a folder that holds files, unless it is the run
    being resumed (or --overwrite, for a folder that holds a train.py run); a file; a path below a
    file; rewinding a run to a checkpoint older than its newest one."""
    resumed_run = ckpt.parent.parent if ckpt else None
    path = Path(out) if out else (resumed_run or new_run_dir())
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"--out {path}: is a file, not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CheckpointError(f"--out {path}: cannot create the folder ({parent} is a file)")
            break
    if resumed_run is not None and path.resolve() == resumed_run.resolve():  # continuing the run in place
        if overwrite:
            raise CheckpointError(f"--overwrite: {path} is the run being resumed; it is not deleted")
        named = Path(resume).resolve() == ckpt.resolve()
        newer = [c.name for c in (path / "checkpoints").glob("step_*") if c.name > ckpt.name and (c / "state.pt").is_file()]
        if named and newer:
            raise CheckpointError(f"resume: {ckpt} is older than the run's newest checkpoint ({max(newer)}); continuing it "
                                  f"in {path} would mix two histories: give a new --out to branch from it")
        return path
    held = sorted(c.name for c in path.iterdir()) if path.is_dir() else []
    if held and not overwrite:
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise CheckpointError(f"--out {path}: already holds files ({shown}): continue that run with --resume {path}, "
                              "or give a new --out (--overwrite deletes the run there first)")
    if held and not any(name in RUN_FILES for name in held):
        raise CheckpointError(f"--out {path}: holds files but no train.py run; --overwrite only deletes a run folder")
    return path


def start_run_folder(out: Path, config: dict, history: dict, overwrite: bool = False,
                     ckpt: Path | None = None) -> Path:
    """Create the run folder chosen by choose_run_folder (emptied first with overwrite), write config.json
    and the logs so far (a resumed run's history), and return the folder. Called once the settings, data
    and model have passed. A new run claims its folder atomically: runs/<timestamp> by make_run_dir, an
    --out by creating config.json exclusively (a second run given the same --out at the same moment is
    refused); only a run resumed in place rewrites its config.json."""
    in_place = ckpt is not None and out.resolve() == ckpt.parent.parent.resolve()
    try:
        if not config.get("out") and ckpt is None:  # runs/<timestamp>: neither --out nor a resumed run
            out = make_run_dir(out)
        if overwrite and out.is_dir():
            for c in out.iterdir():
                if c.is_dir() and not c.is_symlink():
                    shutil.rmtree(c)
                else:
                    c.unlink()
        out.mkdir(parents=True, exist_ok=True)
        try:
            with open(out / "config.json", "w" if in_place else "x") as f:
                f.write(json.dumps(config, indent=2) + "\n")
        except FileExistsError:
            raise CheckpointError(f"--out {out}: another run started writing there at the same moment; "
                                  "give a new --out") from None
        write_jsonl(out / "metrics.jsonl", history["metrics"])
        write_jsonl(out / "eval.jsonl", history["evals"])
    except OSError as e:
        raise CheckpointError(f"--out {out}: cannot create the folder or write in it ({e.strerror or type(e).__name__}"
                              + (f": {e.filename}" if e.filename and str(e.filename) != str(out) else "") + ")") from None
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite a JSONL file atomically (a temp file renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


# ----------------------------------------------------------------------------------------------
# resuming: which checkpoint, and its state


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or under a run folder the newest one whose state.pt is not plainly
    corrupt (see plainly_corrupt): the one resume_point resumes from, so --resume reads the settings
    (config.json) of the checkpoint it continues. If every one is plainly corrupt, the newest, which
    resume_point then refuses by name."""
    p = Path(path)
    if (p / "state.pt").is_file():
        return p
    found = sorted((p / "checkpoints").glob("step_*")) if p.is_dir() else []
    found = [c for c in found if (c / "state.pt").is_file()]
    if not found:
        raise CheckpointError(f"resume: {p}: no checkpoint (expected a run folder with checkpoints/step_* or a step_* folder)")
    intact = [c for c in found if plainly_corrupt(c / "state.pt") is None]
    return (intact or found)[-1]


def plainly_corrupt(f: Path) -> str | None:
    """Why a state.pt is corrupt without reading it (empty, or not the zip archive torch.save writes;
    a cut or overwritten file is none), or None. A zip that is damaged inside shows only on loading."""
    if f.stat().st_size == 0:
        return "an empty file"
    if not zipfile.is_zipfile(f):
        return "not a torch checkpoint: no zip archive; truncated?"
    return None


def resume_point(path: str | Path, log=print) -> tuple[Path, dict]:
    """(checkpoint folder, its state read on the CPU) to resume from. A checkpoint folder named
    itself is used or refused. In a run folder, the newest checkpoint whose state.pt reads: a
    corrupt newer one is skipped, with a line saying which and why."""
    p = Path(path)
    if (p / "state.pt").is_file():
        return p, load_state(p, map_location="cpu")
    newest_first = [c for c in sorted((p / "checkpoints").glob("step_*"), reverse=True) if (c / "state.pt").is_file()]
    if not newest_first:
        find_checkpoint(p)  # raises the one-line "no checkpoint" error
    skipped = []
    for c in newest_first:
        try:
            state = load_state(c, map_location="cpu")
        except CorruptCheckpointError as e:
            skipped.append(str(e))
            continue
        for why in skipped:
            log(f"{why}; skipped: resuming from the earlier {c}")
        return c, state
    more = f"; the {len(skipped) - 1} earlier checkpoint(s) are corrupt too" if len(skipped) > 1 else ""
    raise CorruptCheckpointError(f"{skipped[0]}{more}; nothing in {p} to resume from")


def load_state(ckpt: Path, map_location=None) -> dict:
    """state.pt of a checkpoint folder, loaded with weights_only=True (no code runs). Refused in one
    line naming the file: corrupt (CorruptCheckpointError), an older layout to --upgrade, or pickled
    objects train.py never writes."""
    f = Path(ckpt) / "state.pt"
    try:
        why = plainly_corrupt(f)
        if why:
            raise CorruptCheckpointError(f"resume: {f}: corrupt ({why})")
        state = torch.load(f, map_location=map_location, weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found and found.group(1).startswith("numpy"):  # numpy's RNG state, pickled: the older layout
            raise CheckpointError(
                f"resume: {f}: holds pickled Python objects, not only tensors, lists and numbers, so it is not loaded "
                f"(unpickling can run code); if it is an older train.py checkpoint you trust, convert it once with "
                f"`python checkpoint.py --upgrade {ckpt}`") from None
        if found:
            raise CheckpointError(f"resume: {f}: holds a pickled {found.group(1)}, which train.py never writes; "
                                  "not loaded (unpickling can run code)") from None
        raise CorruptCheckpointError(f"resume: {f}: corrupt ({_first_line(e)})") from None
    except OSError as e:
        raise CheckpointError(f"resume: {f}: cannot read ({e.strerror or type(e).__name__})") from None
    except Exception as e:  # a damaged archive: torch's reader fails in many ways
        raise CorruptCheckpointError(f"resume: {f}: corrupt ({_first_line(e)})") from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise CorruptCheckpointError(f"resume: {f}: not a train.py state (expected the keys {', '.join(STATE_KEYS)})")
    return state


def _first_line(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0]}"[:160] if lines else type(e).__name__


def restore(ckpt: Path, optimizer, scheduler, generator: torch.Generator,
            state: dict | None = None) -> tuple[int, int, dict]:
    """Load a checkpoint's optimizer, scheduler and RNG states in place -> (step, data_pos, history).
    Read on the CPU (or given, as resume_point read it): RNG states must stay CPU tensors, and the
    optimizer moves its own state to the parameters' device."""
    state = state if state is not None else load_state(ckpt, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"], generator)
    return state["step"], state["data_pos"], state["history"]


# ----------------------------------------------------------------------------------------------
# saving, and Ctrl-C


def save_checkpoint(out: Path, step: int, model, tokenizer, optimizer, scheduler, generator, data_pos: int,
                    history: dict, config: dict, keep: int) -> Path:
    """Write everything a resumed run needs into a temp folder, then rename it into place: a
    checkpoint folder either exists complete or not at all (a kill at any moment is safe).
    Keeps the newest `keep` checkpoints (0 = all)."""
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = temp_folder(root, f".tmp-step_{step:06d}-")
    try:
        save_model(model, tmp / "policy", tokenizer)
        state = {"step": step, "data_pos": data_pos, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": rng_state(generator), "history": history}
        torch.save(state, tmp / "state.pt")
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if final.exists():  # the same step saved before (a resumed run): swap, then drop the old one
            old = Path(tempfile.mkdtemp(prefix=".old-", dir=root))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if keep:
        for old in sorted(root.glob("step_*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def temp_folder(parent: Path, prefix: str) -> Path:
    """A new folder with a unique name, like tempfile.mkdtemp, but with the permissions of any folder
    (0777 less the umask: 0755 under the usual 022), as hf.save_model gives policy/; mkdtemp's are
    0700, which would hide a checkpoint from the other users of a shared machine once renamed into place."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def rng_state(generator: torch.Generator) -> dict:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
         "sampling": generator.get_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return plain_rng(s)


def plain_rng(s: dict) -> dict:
    """RNG states as Python and numpy return them (tuples, a numpy array) -> lists and tensors."""
    version, internal, gauss = s["python"]
    name, keys, pos, has_gauss, cached = s["numpy"]
    return {**s, "python": [version, list(internal), gauss],
            "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]}


def set_rng_state(s: dict, generator: torch.Generator) -> None:
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = s["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(s["torch"])
    generator.set_state(s["sampling"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


@contextmanager
def ctrl_c_finishes_the_step(say=print):
    """Inside the block, the first Ctrl-C only sets stop["asked"] (the training loop then finishes
    its step, saves a checkpoint and exits with 130); a second one raises KeyboardInterrupt at once.
    Only the main thread can take signals: elsewhere Ctrl-C keeps its usual meaning."""
    stop = {"asked": False}

    def on_sigint(signum, frame):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        say("Ctrl-C: finishing this step, then saving a checkpoint (Ctrl-C again to abort)")

    old = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    try:
        yield stop
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


# ----------------------------------------------------------------------------------------------
# older checkpoints


def upgrade(ckpt: Path) -> None:
    """Rewrite an old-layout state.pt (pickled RNG states) in the plain layout. Unpickles it: trusted files only."""
    f = Path(ckpt) / "state.pt"
    state = torch.load(f, map_location="cpu", weights_only=False)
    state["rng"] = plain_rng(state["rng"])
    tmp = f.with_name("state.pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, f)
    load_state(ckpt)  # now loads safely


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="checkpoint.py", description=__doc__.splitlines()[0])
    ap.add_argument("--upgrade", metavar="CHECKPOINT", required=True,
                    help="a step_* folder written by an older train.py, which you trust: rewrite its state.pt "
                         "in the plain layout (this unpickles it once)")
    ckpt = Path(ap.parse_args(argv).upgrade)
    if not (ckpt / "state.pt").is_file():
        print(f"checkpoint.py: error: {ckpt}: no state.pt (give a checkpoints/step_* folder)", file=sys.stderr)
        return 2
    try:
        load_state(ckpt)
        print(f"{ckpt / 'state.pt'}: already in the plain layout; nothing to upgrade")
        return 0
    except CorruptCheckpointError as e:
        print(f"checkpoint.py: error: {str(e).removeprefix('resume: ')}: nothing to upgrade", file=sys.stderr)
        return 2
    except CheckpointError:
        pass  # pickled objects: what --upgrade is for
    try:
        upgrade(ckpt)
    except Exception as e:  # not a train.py state, or not a torch file at all
        print(f"checkpoint.py: error: {ckpt / 'state.pt'}: cannot upgrade ({type(e).__name__}: {e})".splitlines()[0],
              file=sys.stderr)
        return 2
    print(f"{ckpt / 'state.pt'}: upgraded; resume with python train.py --resume {ckpt}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
