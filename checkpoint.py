"""The run folder on disk: atomic checkpoints, JSONL logs, and resuming without unpickling code.

A checkpoint is a folder <out>/checkpoints/step_NNNNNN/{policy/, state.pt, config.json}, renamed
into place complete.

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
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from model import save_model

STATE_KEYS = ("step", "data_pos", "optimizer", "scheduler", "rng", "history")


class CheckpointError(ValueError):
    """A checkpoint we cannot or will not resume from; the message is one line naming the path."""


def plain_rng(s: dict) -> dict:
    """RNG states as Python and numpy return them (tuples, a numpy array) -> lists and tensors."""
    version, internal, gauss = s["python"]
    name, keys, pos, has_gauss, cached = s["numpy"]
    return {**s, "python": [version, list(internal), gauss],
            "numpy": [name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)]}


def rng_state(generator: torch.Generator) -> dict:
    s = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
         "sampling": generator.get_state()}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return plain_rng(s)


def set_rng_state(s: dict, generator: torch.Generator) -> None:
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = s["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(s["torch"])
    generator.set_state(s["sampling"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def save_checkpoint(out: Path, step: int, model, tokenizer, optimizer, scheduler, generator, data_pos: int,
                    history: dict, config: dict, keep: int) -> Path:
    """Write everything a resumed run needs into a temp folder, then rename it into place: a
    checkpoint folder either exists complete or not at all (a kill at any moment is safe).
    Keeps the newest `keep` checkpoints (0 = all)."""
    root = out / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-step_{step:06d}-", dir=root))
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


def new_run_dir() -> Path:
    """runs/<timestamp>, with -1, -2, ... if that folder exists."""
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    p, i = base, 1
    while p.exists():
        p, i = Path(f"{base}-{i}"), i + 1
    return p


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rewrite a JSONL file atomically (a temp file renamed into place)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder itself, or the latest complete one under a run folder."""
    p = Path(path)
    if (p / "state.pt").is_file():
        return p
    found = sorted((p / "checkpoints").glob("step_*")) if p.is_dir() else []
    found = [c for c in found if (c / "state.pt").is_file()]
    if not found:
        raise CheckpointError(f"resume: {p}: no checkpoint (expected a run folder with checkpoints/step_* or a step_* folder)")
    return found[-1]


def load_state(ckpt: Path, map_location=None) -> dict:
    """state.pt of a checkpoint folder, loaded with weights_only=True (no code runs)."""
    f = Path(ckpt) / "state.pt"
    try:
        state = torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"resume: {f}: holds pickled Python objects, not only tensors, lists and numbers, so it is not loaded "
            f"(unpickling can run code); if it is an older train.py checkpoint you trust, convert it once with "
            f"`python checkpoint.py --upgrade {ckpt}`") from None
    except Exception as e:  # not a torch file, truncated, unreadable
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"resume: {f}: cannot read ({why})") from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS):
        raise CheckpointError(f"resume: {f}: not a train.py state (expected the keys {', '.join(STATE_KEYS)})")
    return state


def restore(ckpt: Path, optimizer, scheduler, generator: torch.Generator) -> tuple[int, int, dict]:
    """Load a checkpoint's optimizer, scheduler and RNG states in place -> (step, data_pos, history).
    Read on the CPU: RNG states must stay CPU tensors, and the optimizer moves its own state to
    the parameters' device."""
    state = load_state(ckpt, map_location="cpu")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"], generator)
    return state["step"], state["data_pos"], state["history"]


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
        upgrade(ckpt)
    except Exception as e:  # not a train.py state, or not a torch file at all
        print(f"checkpoint.py: error: {ckpt / 'state.pt'}: cannot upgrade ({type(e).__name__}: {e})".splitlines()[0],
              file=sys.stderr)
        return 2
    print(f"{ckpt / 'state.pt'}: upgraded; resume with python train.py --resume {ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
