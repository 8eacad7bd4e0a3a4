"""GRPO vs ARM side by side on the toy: the paper's claims (PAPER.md), measured over seeds.

    python compare.py                      # 3 seeds: base, GRPO, ARM (alpha 1) + alpha sweep 0.1,0.3,1,3 (~20 min)
    python compare.py --quick              # a first look: fewer steps, no sweep (~2 min)
    python compare.py --workers 2          # runs in 2 processes: same numbers, ~1.3x faster on 2 busy cores
    python compare.py --alphas ""          # GRPO vs ARM only
    python compare.py --seeds 5 --low-frac 1.0   # any train.py flag is passed on to every run

Every run starts from the same checkpoint (the toy, or --model) with the same hyper-parameters;
runs of one seed share the training prompts, their order and the sampling seed, and differ only in
alpha (GRPO is alpha = 0, bit for bit). Every policy, the starting one included, is evaluated on
the same held-out prompts with the same sampling seed, n samples each (default 32).

Reported per method, as mean +- std over seeds (train.evaluate gives the per-run numbers):
  pass@k, k = 1, 2, 4, ..., n     unbiased estimator 1 - C(n-c, k) / C(n, k)   (arm.pass_at_k)
  entropy                         mean token entropy of the final policy on its held-out samples
  distinct correct                distinct solution paths (toy.solution_path) among a prompt's
                                  correct samples, averaged over prompts
  c(o|q) std, correct             std of c(o|q) over a prompt's correct samples (prompts with >= 2)
  curves                          training-rollout token entropy and accuracy at every step
and ARM - GRPO as a paired difference (same seed), mean +- std over seeds.

Choices, stated once:
- std over seeds is the sample std (ddof = 1); with one seed it is reported as null.
- The starting checkpoint ("base") is one model: it is evaluated once, so it has no seed spread.
  The held-out sampling noise is the same for every method (same prompts, same eval seed).
- Outputs: <out>/results.json (every number, the per-run values and the exact settings),
  <out>/compare.png when matplotlib is importable (pip install -r requirements-plot.txt), and a
  markdown table on stdout. Run folders (metrics.jsonl, eval.jsonl, policy/) go to <runs>/.
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

import numpy as np
import torch

import train

# defaults: what one `python compare.py` runs (sized to finish within 30 minutes on 2 CPU cores)
SEEDS = 3  # training seeds 0 .. SEEDS-1, the same for every method
ALPHA = train.DEFAULT_ALPHA  # the ARM column of the table
ALPHAS = "0.1,0.3,1,3"  # the alpha sweep ("" = none)
RUN = dict(  # train.py settings shared by every run (any train.py flag overrides them)
    steps=120,  # training steps per run
    prompts_per_step=16,  # P prompts per step
    group_size=8,  # G responses per prompt
    eval_prompts=64,  # held-out prompts
    eval_n=32,  # samples per held-out prompt: pass@k up to k = 32
    save_every=0,  # one checkpoint at the end of each run
    keep_checkpoints=1,
)
QUICK = dict(steps=40, eval_prompts=32)  # --quick: a first look within 5 minutes, no sweep
FIXED = ("algo", "alpha", "seed", "out", "resume", "eval_before", "config")  # set by compare.py per run
SCALARS = ("accuracy", "entropy", "distinct_correct", "conf_o_std_correct", "response_len")
CURVES = ("entropy", "accuracy")  # per training step, from metrics.jsonl


class CompareError(ValueError):
    """A flag a user can get wrong; the message is one line naming it."""


# ----------------------------------------------------------------------------------------------
# the plan: which runs, with which settings


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict]:
    """compare.py's own flags, plus train.py flags (passed on to every run) -> (args, run values)."""
    ap = argparse.ArgumentParser(prog="compare.py", description=__doc__.split("\n")[0], allow_abbrev=False,
                                 epilog="Any other train.py flag (e.g. --lr, --low-frac, --model) is passed on to every run.")
    ap.add_argument("--seeds", type=int, default=SEEDS, help=f"number of training seeds, 0..N-1 (default {SEEDS})")
    ap.add_argument("--alpha", type=float, default=ALPHA, help=f"ARM strength of the main comparison (default {ALPHA})")
    ap.add_argument("--alphas", default=None, help=f"comma-separated alpha sweep, '' = none (default {ALPHAS}; "
                                                   "none with --quick)")
    ap.add_argument("--quick", action="store_true", help=f"a first look: {QUICK} and no sweep, unless given")
    ap.add_argument("--out", default=None, help="folder for results.json and compare.png "
                                                "(default results/toy, or results/toy-quick with --quick)")
    ap.add_argument("--runs", default="", help="folder for the run folders (default runs/compare-<time>)")
    ap.add_argument("--workers", type=int, default=1, help="runs in parallel processes (1 thread each)")
    ap.add_argument("--plot", metavar="RESULTS_JSON", help="only redraw compare.png (beside it) and reprint the tables")
    args, rest = ap.parse_known_args(argv)
    given = vars(train.build_parser().parse_args(rest))  # unknown flags fail here, naming train.py's list
    for k in FIXED:
        if k in given:
            raise CompareError(f"--{k.replace('_', '-')}: set by compare.py for each run; not allowed here")
    if args.seeds < 1:
        raise CompareError(f"--seeds: need at least 1, got {args.seeds}")
    if args.workers < 1:
        raise CompareError(f"--workers: need at least 1, got {args.workers}")
    if not (math.isfinite(args.alpha) and args.alpha > 0):
        raise CompareError(f"--alpha: ARM needs a finite alpha > 0, got {args.alpha}")
    args.out = args.out or ("results/toy-quick" if args.quick else "results/toy")
    args.alphas = parse_alphas(args.alphas if args.alphas is not None else "" if args.quick else ALPHAS)
    values = {**RUN, **(QUICK if args.quick else {}), **given}
    if values.get("eval_prompts", 1) < 1:
        raise CompareError("--eval-prompts: the comparison needs held-out prompts (>= 1)")
    return args, values


def parse_alphas(text: str) -> list[float]:
    """'0.1,0.3,1,3' -> [0.1, 0.3, 1.0, 3.0]; each alpha must be a finite number > 0."""
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


def method_name(alpha: float) -> str:
    return "grpo" if alpha == 0 else f"arm@{alpha:g}"


def plan_runs(args: argparse.Namespace, values: dict, runs_dir: Path) -> list[dict]:
    """One spec per (method, seed): the train.py config values of that run. Validated up front, so a
    bad flag fails in one line before any training."""
    alphas = [0.0] + sorted(set([args.alpha] + args.alphas))
    specs = []
    for alpha in alphas:
        for seed in range(args.seeds):
            name = method_name(alpha)
            v = {**values, "algo": "grpo" if alpha == 0 else "arm", "seed": seed, "eval_before": False,
                 "out": str(runs_dir / f"{name}-seed{seed}")}
            if alpha:
                v["alpha"] = alpha
            train.make_config(v)  # raises train.ConfigError naming the key
            specs.append({"method": name, "alpha": alpha, "seed": seed, "values": v})
    return specs


# ----------------------------------------------------------------------------------------------
# the runs


def prompts_digest(prompts: list[str]) -> str:
    return hashlib.sha256("\n\0".join(prompts).encode()).hexdigest()[:16]


def run_one(spec: dict) -> dict:
    """Train one (method, seed) with train.train and keep what the comparison needs."""
    cfg = train.make_config(spec["values"])
    _, held, _ = train.load_problems(cfg)  # the very list train() evaluates on (deterministic in cfg)
    t = time.time()
    res = train.train(cfg, log=lambda *a: None)
    if res["interrupted"]:
        raise KeyboardInterrupt
    metrics = res["metrics"]
    return {
        "method": spec["method"], "alpha": spec["alpha"], "seed": spec["seed"], "out": res["out"],
        "wall_s": round(time.time() - t, 1),
        "eval_prompts_digest": prompts_digest([p["prompt"] for p in held]),
        "final": res["after"],
        "evals": res["evals"],  # more than the final one with --eval-every
        "curve": {"step": [m["step"] for m in metrics], **{k: [m[k] for m in metrics] for k in CURVES}},
    }


def evaluate_base(values: dict) -> dict:
    """The starting checkpoint on the held-out prompts: the same call train() makes after training."""
    cfg = train.make_config({**values, "seed": 0})
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = train.resolve_device(cfg)
    path = cfg.model or str(train.toy_dir())
    tokenizer = train.load_tokenizer(path)
    model = train.load_model(path, device=device, dtype=torch.float32)
    eos_ids = train.chat_eos_ids(model, tokenizer, cfg)
    _, held, path_fn = train.load_problems(cfg)
    t = time.time()
    e = {"step": 0, **train.evaluate(model, tokenizer, held, cfg, path_fn=path_fn, eos_ids=eos_ids)}
    return {"method": "base", "alpha": None, "seed": None, "out": path, "wall_s": round(time.time() - t, 1),
            "eval_prompts_digest": prompts_digest([p["prompt"] for p in held]), "final": e, "evals": [e],
            "eval_prompts": [p["prompt"] for p in held]}


def run_all(specs: list[dict], workers: int, log=print) -> list[dict]:
    """Sequential (workers = 1, with train.py's progress bar) or in `workers` spawned processes."""
    if workers == 1:
        out = []
        for i, s in enumerate(specs):
            log(f"[{i + 1}/{len(specs)}] {s['method']} seed {s['seed']}")
            out.append(run_one(s))
            log(run_line(out[-1]))
        return out
    os.environ["TQDM_DISABLE"] = "1"  # spawned workers inherit it: no interleaved progress bars
    try:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as ex:
            futures = [ex.submit(run_one, s) for s in specs]
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
    return (f"  {r['method']} seed {r['seed']}: pass@1 {e['pass@k']['1']:.3f} pass@{ks[-1]} {e['pass@k'][ks[-1]]:.3f} "
            f"entropy {e['entropy']:.3f} distinct {e['distinct_correct']:.2f} ({r['wall_s']:.0f} s)")


# ----------------------------------------------------------------------------------------------
# statistics over seeds


def mean_std(xs: list[float | None]) -> dict:
    """{"mean", "std" (sample, ddof 1; None for one value), "n"} over the values that are not None."""
    v = np.array([x for x in xs if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None, "n": int(len(v))}


def summarize(runs: list[dict]) -> dict:
    """Mean +- std over a method's runs of every final number, and of the curves step by step."""
    finals = [r["final"] for r in runs]
    out = {"pass@k": {k: mean_std([e["pass@k"][k] for e in finals]) for k in finals[0]["pass@k"]},
           **{k: mean_std([e.get(k) for e in finals]) for k in SCALARS}}
    if all("curve" in r for r in runs):
        n = min(len(r["curve"]["step"]) for r in runs)
        out["curve"] = {"step": runs[0]["curve"]["step"][:n]}
        for k in CURVES:
            rows = np.array([r["curve"][k][:n] for r in runs], dtype=np.float64)  # (seeds, steps)
            out["curve"][k] = {"mean": rows.mean(0).tolist(),
                               "std": rows.std(0, ddof=1).tolist() if len(runs) > 1 else None}
    return out


def paired_diff(a: list[dict], b: list[dict]) -> dict:
    """a - b seed by seed (same seed = same prompts and sampling seed), mean +- std over seeds."""
    by_seed = {r["seed"]: r["final"] for r in b}
    pairs = [(r["final"], by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
    d = {"pass@k": {k: mean_std([x["pass@k"][k] - y["pass@k"][k] for x, y in pairs]) for k in a[0]["final"]["pass@k"]}}
    for k in SCALARS:
        d[k] = mean_std([x[k] - y[k] for x, y in pairs if x.get(k) is not None and y.get(k) is not None])
    return d


def collect(base: dict, runs: list[dict], args: argparse.Namespace, values: dict, wall_s: float, command: str) -> dict:
    """Everything into one JSON-able dict (results.json)."""
    methods = {"base": {"alpha": None, "runs": [base], "summary": summarize([base])}}
    for r in runs:
        methods.setdefault(r["method"], {"alpha": r["alpha"], "runs": []})["runs"].append(r)
    for name, m in methods.items():
        if name != "base":
            m["summary"] = summarize(m["runs"])
    main = method_name(args.alpha)
    return {
        "command": command,
        "wall_s": round(wall_s, 1),
        "seeds": list(range(args.seeds)),
        "main": {"grpo": "grpo", "arm": main},
        "alphas": sorted({0.0, args.alpha, *args.alphas}),
        "settings": {k: v for k, v in dataclasses.asdict(train.make_config(values)).items() if k not in FIXED},
        "eval": {"prompts": base.pop("eval_prompts"), "digest": base["eval_prompts_digest"],
                 "n": base["final"]["n"], "seed": train.make_config(values).eval_seed},
        "methods": methods,
        "arm_minus_grpo": paired_diff(methods[main]["runs"], methods["grpo"]["runs"]),
        "std": "sample std over seeds (ddof 1); base is one model evaluated once (no seed spread)",
    }


# ----------------------------------------------------------------------------------------------
# reporting: markdown tables and the figure


def fmt(s: dict, digits: int = 3, sign: bool = False) -> str:
    if s["mean"] is None:
        return "-"
    m = f"{s['mean']:+.{digits}f}" if sign else f"{s['mean']:.{digits}f}"
    return m if s["std"] is None else f"{m} ± {s['std']:.{digits}f}"


ROWS = [("entropy", "token entropy (final)"), ("distinct_correct", "distinct correct paths / prompt"),
        ("conf_o_std_correct", "std c(o|q), correct samples"), ("accuracy", "held-out accuracy"),
        ("response_len", "response length (tokens)")]


def format_tables(res: dict) -> str:
    """Main table (base, GRPO, ARM, paired ARM - GRPO), the alpha sweep, and the training curves."""
    ms = res["methods"]
    g, a = ms["grpo"]["summary"], ms[res["main"]["arm"]]["summary"]
    b, d = ms["base"]["summary"], res["arm_minus_grpo"]
    alpha = ms[res["main"]["arm"]]["alpha"]
    lines = [f"| metric (mean ± std, {len(res['seeds'])} seeds) | base | GRPO | ARM α={alpha:g} | ARM − GRPO (paired) |",
             "|---|---|---|---|---|"]
    for k in g["pass@k"]:
        lines.append(f"| pass@{k} | {fmt(b['pass@k'][k])} | {fmt(g['pass@k'][k])} | {fmt(a['pass@k'][k])} | "
                     f"{fmt(d['pass@k'][k], sign=True)} |")
    for k, label in ROWS:
        digits = 1 if k == "response_len" else 3
        lines.append(f"| {label} | {fmt(b[k], digits)} | {fmt(g[k], digits)} | {fmt(a[k], digits)} | "
                     f"{fmt(d[k], digits, sign=True)} |")
    if len(res["alphas"]) > 2:
        ks = list(g["pass@k"])
        show = [k for k in ("1", "8", ks[-1]) if k in ks]
        lines += ["", "| α | " + " | ".join(f"pass@{k}" for k in show) + " | entropy | distinct correct |",
                  "|---" * (len(show) + 3) + "|"]
        for al in res["alphas"]:
            s = ms[method_name(al)]["summary"]
            lines.append(f"| {al:g}{' (GRPO)' if al == 0 else ''} | " + " | ".join(fmt(s["pass@k"][k]) for k in show)
                         + f" | {fmt(s['entropy'])} | {fmt(s['distinct_correct'])} |")
    steps = g["curve"]["step"]
    if steps:
        at = sorted({steps[0], *(steps[int(len(steps) * f) - 1] for f in (0.25, 0.5, 0.75, 1.0))})
        lines += ["", "| training rollouts (mean over seeds) | " + " | ".join(f"step {s}" for s in at) + " |",
                  "|---" * (len(at) + 1) + "|"]
        for name in [m for m in ms if m != "base"]:
            c = ms[name]["summary"]["curve"]
            for k in CURVES:
                lines.append(f"| {name} {k} | " + " | ".join(f"{c[k]['mean'][steps.index(s)]:.3f}" for s in at) + " |")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> bool:
    """Entropy and accuracy vs step, pass@k vs k, and the alpha sweep; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ms = res["methods"]
    names = ["grpo", res["main"]["arm"]] + [method_name(a) for a in res["alphas"] if method_name(a) not in
                                             ("grpo", res["main"]["arm"])]
    colors = {n: c for n, c in zip(names, ["tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple",
                                           "tab:brown", "tab:pink", "tab:olive"])}
    main = set(names[:2])
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for col, k in enumerate(CURVES):
        for n in names:
            c = ms[n]["summary"]["curve"]
            x, m = np.array(c["step"]), np.array(c[k]["mean"])
            ax[0, col].plot(x, m, color=colors[n], lw=2 if n in main else 0.8, label=n)
            if c[k]["std"] is not None and n in main:
                s = np.array(c[k]["std"])
                ax[0, col].fill_between(x, m - s, m + s, color=colors[n], alpha=0.15)
        ax[0, col].set(xlabel="training step", ylabel=f"{k} (training rollouts)", title=f"{k} over training")
        ax[0, col].legend(fontsize=8)
    ks = [int(k) for k in ms["grpo"]["summary"]["pass@k"]]
    for n in ["base"] + names:
        p = ms[n]["summary"]["pass@k"]
        m = [p[str(k)]["mean"] for k in ks]
        e = [p[str(k)]["std"] or 0.0 for k in ks]
        ax[1, 0].errorbar(ks, m, yerr=e, marker="o", ms=3, capsize=2, label=n,
                          color="black" if n == "base" else colors[n], lw=2 if n in main else 0.8)
    ax[1, 0].set_xscale("log", base=2)
    ax[1, 0].set(xlabel="k", ylabel="pass@k (held-out)", title="pass@k vs k")
    ax[1, 0].legend(fontsize=8)
    if len(res["alphas"]) > 2:
        al = [a for a in res["alphas"] if a > 0]
        for k, style in (("1", "-o"), (str(ks[-1]), "--s")):
            m = [ms[method_name(a)]["summary"]["pass@k"][k]["mean"] for a in al]
            e = [ms[method_name(a)]["summary"]["pass@k"][k]["std"] or 0.0 for a in al]
            line = ax[1, 1].errorbar(al, m, yerr=e, fmt=style, capsize=2, label=f"ARM pass@{k}")
            ax[1, 1].axhline(ms["grpo"]["summary"]["pass@k"][k]["mean"], color=line[0].get_color(), ls=":",
                             label=f"GRPO pass@{k}")
        ax[1, 1].set_xscale("log")
        ax[1, 1].set(xlabel="alpha", ylabel="pass@k (held-out)", title="alpha sweep")
        ax[1, 1].legend(fontsize=8)
    else:
        ax[1, 1].axis("off")
    fig.suptitle(f"GRPO vs ARM, mean ± std over {len(res['seeds'])} seeds; held-out n = {res['eval']['n']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------


def report(res: dict, out: Path) -> None:
    """Print the tables and draw out/compare.png (or say how to get it)."""
    print()
    print(format_tables(res))
    print(f"\n{res['eval']['n']} samples on each of {len(res['eval']['prompts'])} held-out prompts; "
          f"wall time {res['wall_s']:.0f} s; {out / 'results.json'}")
    if plot(res, out / "compare.png"):
        print(f"figure: {out / 'compare.png'}")
    else:
        print("figure: matplotlib is not installed: `pip install -r requirements-plot.txt`, then "
              f"`python compare.py --plot {out / 'results.json'}` draws it from the results (no retraining)")


def main(argv: list[str] | None = None) -> int:
    t0 = time.time()
    command = "python compare.py" + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
    try:
        args, values = parse_args(argv)
        if args.plot:
            res = train.read_json_object(args.plot, "--plot")
            if "methods" not in res:
                raise CompareError(f"--plot: {args.plot}: not a compare.py results.json (no 'methods')")
            report(res, Path(args.plot).parent)
            return 0
        runs_dir = Path(args.runs) if args.runs else Path("runs") / time.strftime("compare-%Y%m%d-%H%M%S")
        specs = plan_runs(args, values, runs_dir)
        print(f"{len(specs)} runs ({len(specs) // args.seeds} methods x {args.seeds} seeds), "
              f"{values['steps']} steps each; run folders in {runs_dir}/")
        base = evaluate_base(values)
        print(f"base: pass@1 {base['final']['pass@k']['1']:.3f}, entropy {base['final']['entropy']:.3f} "
              f"({base['wall_s']:.0f} s to evaluate)")
        runs = run_all(specs, args.workers)
    except (CompareError, train.ConfigError, train.DataError, train.ModelLoadError) as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("compare.py: interrupted; finished runs are in their run folders, no results.json written", file=sys.stderr)
        return 130
    res = collect(base, runs, args, values, time.time() - t0, command)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, out / "results.json")
    report(res, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
