"""GRPO vs ARM and ARM's parts, side by side on the toy regimes, over seeds (METHOD.md's claims).

    python -m research.compare --workers 2              # original and equal-paths x 6 methods x 12 seeds -> runs/compare-<time>/
    python -m research.compare --regime hidden-type     # the third: 8 methods x 12 seeds (shown-type: GRPO, the control)
    python -m research.compare --regime hidden-type --out research/results   # ... and store it (replaces the stored one)
    python -m research.compare --quick                  # a first look: 1 seed, short runs
    python -m research.compare --regime equal-paths --method arm --seed 3    # rerun one cell, beside the stored one
    python -m research.compare --regime original --method grpo,arm --seeds 3 --out runs/cmp  # any subset
    python -m research.compare --plot research/results/equal-paths/results.json   # redraw the figure and tables

The methods (every ARM variant with the same alpha, fixed before any run; METHOD.md definition 4):

    grpo                       A_i                                              (alpha = 0)
    arm                        A_i + alpha (c(q) - c(o_i|q)), every response of a group with a correct
                               answer                                            (the paper, as written)
    arm-correct-only           the same shift on correct responses only          (our ablation)
    arm-centred                c(o_i|q) compared with cbar, the mean c(o|q) of the group's correct
                               responses, instead of c(q)                        (our ablation)
    arm-centred-correct-only   both: a pure re-weighting among the correct answers, zero-sum over them
                               (our ablation)

All four ARM variants share the re-weighting among correct answers, alpha (cbar - c(o_i|q)); they
differ only in the offset alpha (c(q) - cbar) and in whether wrong answers get a shift at all.
NAME@ALPHA is a variant at another alpha: the default list adds arm-centred-correct-only@10.

Every run of a regime starts from that regime's shipped toy with the same settings; runs of one seed
share the training prompts, their order and the sampling seed and differ only in the advantage.
Every policy, the starting one ("base") included, is evaluated on the same held-out prompts with
the same sampling seed, n samples each (32). Reported per regime and method, mean +- sample std
(ddof 1) over seeds: pass@k for k = 1..n (arm.pass_at_k on the per-prompt counts), token entropy,
distinct correct paths per prompt (toys.tasks.solution_path), the spread of c(o|q) over correct samples,
the share of correct samples per path, and the training curves (entropy, accuracy). Each method is
compared with GRPO seed by seed: mean paired difference and its 95 % t-interval over seeds. The
row "pass@n − pass@1" is how much a policy gains from more samples: its paired difference to GRPO
is positive when a method's gain over GRPO grows with k (METHOD.md claim 2).

The statistics, the claims, the tables and the figure are in research/report.py.
Outputs, per regime: results.json (every number, per-run values, the exact settings), the tables as
printed, in markdown (report.TABLES_MD; rewritten with results.json, so the two agree), compare.png
(when matplotlib is importable: pip install -r requirements-plot.txt), and the tables on stdout. They
go to a fresh folder, runs/compare-<time>/<regime>/, beside that comparison's run folders (--out DIR:
DIR/<regime>/; --runs DIR: the run folders, and the results unless --out, in DIR). The stored results,
research/results/, are written only when --out names them, and never replaced by fewer seeds, methods
or steps without --overwrite. With --seed (one seed), only the run folder is written: the cells are
printed beside the stored ones, which are only read. An interrupted comparison continues with
--runs <its folder> --reuse: finished runs are read back.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

import train
from checkpoint import CheckpointError, make_fresh_folder
from config import Config, ConfigError, build_parser, make_config, read_json_object, resolve_device
from data import DataError, chat_eos_ids, load_problems
from hf import ModelLoadError, load_model, load_tokenizer
from research.methods import ALPHA, DEFAULT_REGIMES, METHODS, PLANS, QUICK, RUN, SEEDS, method_name, method_values
from research.report import CURVES, TABLES_MD, beside_stored, paired_diff, recompute, report, summarize
from toys.tasks import REGIMES as TOY_REGIMES
from toys.tasks import toy_dir

ROOT = Path(__file__).resolve().parent.parent  # the repository: stored paths are relative to it
REGIMES = tuple(TOY_REGIMES)  # original, equal-paths, hidden-type, shown-type, hidden-type-r20
FIXED = ("algo", "alpha", "seed", "out", "resume", "eval_before", "config", "toy", "shift_rows", "shift_center",
         "rank_penalty")
STORED = Path("research/results")  # the stored comparisons: read by --seed, written only when --out names them
WRITES = f"""what it writes (nothing under research/results/ unless --out names it):
  a comparison  a fresh folder runs/compare-<time>/ (--quick: runs/compare-quick-<time>/):
                each run's folder <regime>/<method>-seed<N>/ and, at the end, <regime>/results.json,
                {TABLES_MD} and compare.png beside them. --runs DIR: the run folders, and the
                results unless --out, in DIR; --out DIR: the results in DIR/<regime>/.
  storing it    --out research/results. A results.json there (or in any --out) is not replaced
                by one with fewer seeds, methods, steps, held-out prompts or samples: refused in
                one line before any run, unless --overwrite. {TABLES_MD} is rewritten with it.
  --seed N      only the run folder (a fresh runs/compare-<time>/, or --runs); the cells are
                printed beside research/results/<regime>/results.json (or --out's), only read.
  --plot FILE   compare.png redrawn beside FILE; the tables on stdout.

Any other train.py flag (e.g. --lr, --low-frac, --model) is passed on to every run."""


class CompareError(ValueError):
    """A flag a user can get wrong; the message is one line naming it."""


# ----------------------------------------------------------------------------------------------
# the plan: which runs, with which settings


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """compare.py's own flags, plus train.py flags (passed on to every run) -> (args, run values per
    regime). args.methods is a dict: regime -> its methods."""
    ap = argparse.ArgumentParser(prog="python -m research.compare", description=__doc__.split("\n")[0], allow_abbrev=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=WRITES)
    ap.add_argument("--regime", default=",".join(DEFAULT_REGIMES),
                    help=f"comma-separated toy regimes among {', '.join(REGIMES)} (default {','.join(DEFAULT_REGIMES)})")
    ap.add_argument("--method", default="",
                    help=f"comma-separated methods, NAME or NAME@ALPHA (unlikely@BETA for the baseline's rank "
                         f"penalty); default per regime: {', '.join(f'{g}: {len(m)} methods' for g, (m, _) in PLANS.items())}")
    ap.add_argument("--seeds", type=int, default=SEEDS, help=f"number of training seeds, 0..N-1 (default {SEEDS}; 1 with --quick)")
    ap.add_argument("--seed", type=int, default=None, help="rerun this one seed only and print it beside the stored results")
    ap.add_argument("--alpha", type=float, default=ALPHA, help=f"ARM strength of every ARM variant (default {ALPHA:g})")
    ap.add_argument("--alphas", default="", help="comma-separated extra alphas for the paper's form, as methods arm@A "
                                                 "(default none)")
    ap.add_argument("--quick", action="store_true", help=f"a first look: {QUICK}, 1 seed, unless given")
    ap.add_argument("--out", default="", help=f"folder for <regime>/results.json, {TABLES_MD} and compare.png (default: "
                                              "the fresh runs/compare-<time>/ that holds the run folders); "
                                              "--out research/results stores them. With --seed: the results to "
                                              "print beside (default research/results), only read")
    ap.add_argument("--runs", default="", help="folder for the run folders, <regime>/<method>-seed<N>/ (default: a "
                                               "fresh runs/compare-<time>/)")
    ap.add_argument("--overwrite", action="store_true", help="replace a results.json in --out that holds more seeds, "
                                                             "methods, steps, held-out prompts or samples than this "
                                                             "comparison (refused without it)")
    ap.add_argument("--reuse", action="store_true", help="with --runs: read runs that are already there and "
                                                          "finished (same config) instead of training them again")
    ap.add_argument("--workers", type=int, default=1, help="runs in parallel processes (1 thread each)")
    ap.add_argument("--plot", metavar="RESULTS_JSON", help="only redraw compare.png (beside it) and reprint the "
                                                            "tables, recomputed from the per-run values")
    args, rest = ap.parse_known_args(argv)
    given = vars(build_parser().parse_args(rest))  # unknown flags fail here, naming train.py's list
    for k in FIXED:
        if k in given:
            raise CompareError(f"--{k.replace('_', '-')}: set by compare.py for each run; not allowed here")
    args.regimes = parse_list(args.regime, "--regime", REGIMES)
    args.alphas = parse_alphas(args.alphas)
    given_methods = parse_methods(args.method) if args.method.strip() else None
    args.methods = {}  # regime -> its methods
    for g in args.regimes:
        ms = given_methods or list(PLANS[g][0])
        ms = list(dict.fromkeys(ms + [method_name(a) for a in args.alphas]))
        args.methods[g] = list(dict.fromkeys(["grpo"] + ms)) if args.seed is None else ms
    if args.seed is not None:
        if args.seed < 0:
            raise CompareError(f"--seed: need a seed >= 0, got {args.seed}")
        args.seed_list = [args.seed]
    else:
        if args.seeds < 1:
            raise CompareError(f"--seeds: need at least 1, got {args.seeds}")
        n = 1 if args.quick and "--seeds" not in (argv if argv is not None else sys.argv[1:]) else args.seeds
        args.seed_list = list(range(n))
    if args.workers < 1:
        raise CompareError(f"--workers: need at least 1, got {args.workers}")
    if not (math.isfinite(args.alpha) and args.alpha > 0):
        raise CompareError(f"--alpha: ARM needs a finite alpha > 0, got {args.alpha}")
    values = {g: {**RUN, **PLANS[g][1], **(QUICK if args.quick else {}), **given} for g in args.regimes}
    if any(v.get("eval_prompts", 1) < 1 for v in values.values()):
        raise CompareError("--eval-prompts: the comparison needs held-out prompts (>= 1)")
    return args, values


def parse_list(text: str, flag: str, known: tuple[str, ...]) -> list[str]:
    out = [p.strip() for p in text.split(",") if p.strip()]
    for p in out:
        if p not in known:
            raise CompareError(f"{flag}: {p!r} is not one of {', '.join(known)}")
    if not out:
        raise CompareError(f"{flag}: name at least one of {', '.join(known)}")
    return list(dict.fromkeys(out))


def parse_methods(text: str) -> list[str]:
    """'grpo,arm,arm-centred@10' -> the names, each a METHODS key, optionally @ a finite alpha > 0."""
    out = [p.strip() for p in text.split(",") if p.strip()]
    for p in out:
        name, at, a = p.partition("@")
        if name not in METHODS or (at and name == "grpo"):
            raise CompareError(f"--method: {p!r} is not one of {', '.join(METHODS)} (ARM ones may end in @ALPHA)")
        try:
            ok = not at or (math.isfinite(float(a)) and float(a) > 0)
        except ValueError:
            ok = False
        if not ok:
            raise CompareError(f"--method: {p!r}: the alpha after @ must be a finite number > 0")
    if not out:
        raise CompareError(f"--method: name at least one of {', '.join(METHODS)}")
    return list(dict.fromkeys(out))


def parse_alphas(text: str) -> list[float]:
    """'0.3,3' -> [0.3, 3.0]; each alpha must be a finite number > 0."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            a = float(part)
        except ValueError:
            raise CompareError(f"--alphas: {part!r} is not a number") from None
        if not (math.isfinite(a) and a > 0):
            raise CompareError(f"--alphas: each alpha must be a finite number > 0, got {part}")
        out.append(a)
    return sorted(set(out))


def plan_runs(args: argparse.Namespace, values: dict, runs_dir: Path) -> list[dict]:
    """One spec per (regime, method, seed): the train.py config values of that run. Validated up
    front, so a bad flag fails in one line before any training."""
    specs = []
    for regime in args.regimes:
        for method in args.methods[regime]:
            for seed in args.seed_list:
                v = {**values[regime], **method_values(method, args.alpha), "toy": regime, "seed": seed, "eval_before": False,
                     "out": str(runs_dir / regime / f"{method}-seed{seed}")}
                make_config(v)  # raises ConfigError naming the key
                specs.append({"regime": regime, "method": method, "alpha": v.get("alpha", 0.0), "seed": seed, "values": v})
    return specs


# ----------------------------------------------------------------------------------------------
# where it writes: a fresh folder by default; never over more results, never into another comparison's runs


def fresh_folder(name: str) -> Path:
    """runs/<name>-<time>/, made here: mkdir fails if the folder exists, and then the next name is
    tried (-2, -3, ...), so two comparisons started in the same second get two folders."""
    return make_fresh_folder(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_replace(out: Path, args: argparse.Namespace, values: dict) -> None:
    """Refuse, in one line, to replace a results.json in `out` with one that holds fewer seeds, methods,
    steps, held-out prompts or samples per prompt (unless --overwrite)."""
    for regime in [] if args.overwrite else args.regimes:
        path = out / regime / "results.json"
        if not path.is_file():
            continue
        try:
            old = json.loads(path.read_text())
            steps, prompts, n = (old["settings"][k] for k in ("steps", "eval_prompts", "eval_n"))
            seeds, methods = old["seeds"], [m for m in old["methods"] if m != "base"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CompareError(f"{path}: exists but is not a compare.py results.json; add --overwrite to replace it, "
                               "or give another --out") from None
        v, mine = values[regime], args.methods[regime]
        lost = [f"{len(seeds)} seeds -> {len(args.seed_list)}"] if set(seeds) - set(args.seed_list) else []
        missing = [m for m in methods if m not in mine]
        lost += [f"{len(methods)} methods -> {len(mine)} (without {', '.join(missing)})"] if missing else []
        lost += [f"{a} {what} -> {b}" for a, b, what in ((steps, v["steps"], "steps"),
                                                         (prompts, v["eval_prompts"], "held-out prompts"),
                                                         (n, v["eval_n"], "samples per prompt")) if b < a]
        if lost:
            raise CompareError(f"{path} holds more than this comparison would write ({', '.join(lost)}): "
                               "add --overwrite to replace it, or give another --out")


def check_runs_free(specs: list[dict], runs: str) -> None:
    """Refuse, in one line and before any run, a --runs folder that already holds one of these runs."""
    held = [s["values"]["out"] for s in specs if Path(s["values"]["out"]).exists()
            and (not Path(s["values"]["out"]).is_dir() or any(Path(s["values"]["out"]).iterdir()))]
    if held:
        more = f" and {len(held) - 1} more" if len(held) > 1 else ""
        raise CompareError(f"--runs {runs}: already holds {held[0]}{more}: continue with --reuse (finished runs "
                           "are read back), or give another --runs")


# ----------------------------------------------------------------------------------------------
# the runs


def prompts_digest(prompts: list[str]) -> str:
    return hashlib.sha256("\n\0".join(prompts).encode()).hexdigest()[:16]


def repo_relative(path: str | Path) -> str:
    """A path inside the repository as a relative path (nothing committed names this machine's folders)."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(path)


def finished_run(cfg: Config) -> dict | None:
    """The outputs of a run folder that already holds this very run, finished (--reuse): the same
    config.json, a metrics line per step, the final evaluation and the final policy/; else None."""
    out = Path(cfg.out)
    try:
        same = json.loads((out / "config.json").read_text()) == dataclasses.asdict(cfg)
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return None
    if not (same and len(metrics) == cfg.steps and evals and evals[-1]["step"] == cfg.steps
            and (out / "policy" / "model.safetensors").is_file()):
        return None
    return {"out": str(out), "metrics": metrics, "after": evals[-1], "wall_s": metrics[-1]["elapsed_s"]}


def run_one(spec: dict, reuse: bool = False) -> dict:
    """Train one (regime, method, seed) with train.train and keep what the comparison needs. With
    reuse, a run folder that already holds this run, finished, is read instead of training again."""
    cfg = make_config(spec["values"])
    _, held, _ = load_problems(cfg)  # the very list train() evaluates on (deterministic in cfg)
    t = time.time()
    res = finished_run(cfg) if reuse else None
    if res is None:
        res = train.train(cfg, log=lambda *a: None, overwrite=reuse)  # --reuse: an unfinished run starts over
        if res["interrupted"]:
            raise KeyboardInterrupt
        res["wall_s"] = time.time() - t
    metrics = res["metrics"]
    return {
        "regime": spec["regime"], "method": spec["method"], "alpha": spec["alpha"], "seed": spec["seed"],
        "out": repo_relative(res["out"]), "wall_s": round(res["wall_s"], 1),
        "eval_prompts_digest": prompts_digest([p["prompt"] for p in held]),
        "final": res["after"],
        "curve": {"step": [m["step"] for m in metrics], **{k: [m[k] for m in metrics] for k in CURVES},
                  "conf_q_mean": [m["conf_q_mean"] for m in metrics]},
    }


def evaluate_base(values: dict, regime: str) -> dict:
    """A regime's starting checkpoint on the held-out prompts: the same call train() makes after training."""
    cfg = make_config({**values, "seed": 0, "toy": regime})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg)
    path = cfg.model or str(toy_dir(regime))
    tokenizer = load_tokenizer(path)
    model = load_model(path, device=device, dtype=torch.float32)
    eos_ids = chat_eos_ids(model, tokenizer, cfg)
    _, held, path_fn = load_problems(cfg)
    t = time.time()
    e = {"step": 0, **train.evaluate(model, tokenizer, held, cfg, path_fn=path_fn, eos_ids=eos_ids)}
    return {"regime": regime, "method": "base", "alpha": None, "seed": None, "out": repo_relative(path),
            "wall_s": round(time.time() - t, 1), "eval_prompts_digest": prompts_digest([p["prompt"] for p in held]),
            "final": e, "eval_prompts": [p["prompt"] for p in held]}


def run_all(specs: list[dict], workers: int, log=print, reuse: bool = False) -> list[dict]:
    """Sequential (workers = 1, with train.py's progress bar) or in `workers` spawned processes."""
    if workers == 1:
        out = []
        for i, s in enumerate(specs):
            log(f"[{i + 1}/{len(specs)}] {s['regime']} {s['method']} seed {s['seed']}")
            out.append(run_one(s, reuse))
            log(run_line(out[-1]))
        return out
    os.environ["TQDM_DISABLE"] = "1"  # spawned workers inherit it: no interleaved progress bars
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            futures = [ex.submit(run_one, s, reuse) for s in specs]
            out = []
            for f in futures:  # in plan order, so the results file is the same whatever the timing
                out.append(f.result())
                log(run_line(out[-1]))
            return out
    finally:
        os.environ.pop("TQDM_DISABLE", None)


def run_line(r: dict) -> str:
    e = r["final"]
    ks = list(e["pass@k"])
    return (f"  {r['regime']} {r['method']} seed {r['seed']}: pass@1 {e['pass@k']['1']:.3f} pass@{ks[-1]} "
            f"{e['pass@k'][ks[-1]]:.3f} entropy {e['entropy']:.3f} distinct {e['distinct_correct']:.2f} ({r['wall_s']:.0f} s)")


# ----------------------------------------------------------------------------------------------
# the results file (report.py computes its statistics, tables and figure)


def collect(regime: str, base: dict, runs: list[dict], args: argparse.Namespace, values: dict, wall_s: float,
            command: str) -> dict:
    """One regime's results into one JSON-able dict (results.json)."""
    methods = {"base": {"alpha": None, "runs": [base], "summary": summarize([base])}}
    for r in runs:
        methods.setdefault(r["method"], {"alpha": r["alpha"], "runs": []})["runs"].append(r)
    for name, m in methods.items():
        if name != "base":
            m["summary"] = summarize(m["runs"])
            m["variant"] = method_values(name, args.alpha)
    settings = dataclasses.asdict(make_config({**values[regime], "toy": regime}))
    return {
        "regime": regime,
        "command": command,
        "wall_s": round(wall_s, 1),
        "seeds": args.seed_list,
        "settings": {k: v for k, v in settings.items() if k not in FIXED},
        "eval": {"prompts": base.pop("eval_prompts"), "digest": base["eval_prompts_digest"],
                 "n": base["final"]["n"], "seed": settings["eval_seed"]},
        "methods": methods,
        "minus_grpo": {name: paired_diff(m["runs"], methods["grpo"]["runs"])
                       for name, m in methods.items() if name not in ("base", "grpo")},
        "std": "sample std over seeds (ddof 1); ci95 = half-width of the 95 % t-interval of the mean over seeds; "
               "base is one model evaluated once (no seed spread)",
    }


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    command = "python -m research.compare" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    made = None  # the fresh folder this comparison made, if any
    try:
        args, values = parse_args(argv)
        if args.plot:
            res = read_json_object(args.plot, "--plot")
            if "methods" not in res or "regime" not in res:
                raise CompareError(f"--plot: {args.plot}: not a compare.py results.json (no 'methods' / 'regime')")
            report(recompute(res), Path(args.plot).parent)
            return 0
        specs = plan_runs(args, values, Path(args.runs or "runs"))  # every run's settings checked, nothing made yet
        if args.seed is None and (args.out or args.runs):
            check_replace(Path(args.out or args.runs), args, values)
        if args.runs and not args.reuse:
            check_runs_free(specs, args.runs)
        runs_dir = Path(args.runs) if args.runs else fresh_folder("compare-quick" if args.quick else "compare")
        made = None if args.runs else runs_dir
        out = Path(args.out or runs_dir) if args.seed is None else Path(args.out or STORED)  # --seed: only read
        specs = plan_runs(args, values, runs_dir)
        print(f"{len(specs)} runs (" + ", ".join(f"{g}: {len(args.methods[g])} methods x {values[g]['steps']} steps"
                                                 for g in args.regimes) +
              f"; {len(args.seed_list)} seeds); run folders in {runs_dir}/" +
              (f"; results to {out}/<regime>/" if args.seed is None else ""))
        bases = {} if args.seed is not None else {g: evaluate_base(values[g], g) for g in args.regimes}
        for g, b in bases.items():
            print(f"base {g}: pass@1 {b['final']['pass@k']['1']:.3f}, entropy {b['final']['entropy']:.3f} "
                  f"({b['wall_s']:.0f} s to evaluate)")
        runs = run_all(specs, args.workers, reuse=args.reuse)
    except (CompareError, ConfigError, DataError, ModelLoadError, CheckpointError) as e:
        if made is not None and not any(made.iterdir()):
            made.rmdir()  # a run that failed before its first run folder leaves nothing behind
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compare.py: interrupted; finished runs are in their run folders, no results.json written", file=sys.stderr)
        return 130
    if args.seed is not None:
        print()
        print(beside_stored(runs, out))
        return 0
    for regime in args.regimes:
        res = collect(regime, bases[regime], [r for r in runs if r["regime"] == regime], args, values,
                      time.time() - t0, command)
        folder = out / regime
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / "results.json.tmp"
        tmp.write_text(json.dumps(res, indent=1) + "\n")
        os.replace(tmp, folder / "results.json")
        report(res, folder, tables=True)  # the tables beside it, rewritten with it
    return 0


if __name__ == "__main__":
    sys.exit(main())
