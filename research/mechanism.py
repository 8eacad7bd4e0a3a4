r"""
What the methods do on the hidden-type toy, measured after training runs (research/README.md,
the hidden-type comparison):

    python -m research.mechanism --push                          # each method's push on the path choice, shipped model
    python -m research.mechanism --push RUN/checkpoints/step_000050/policy ... --prompts 512   # on trained policies
    python -m research.mechanism --by-step RESULTS_JSON --steps 100,200,300,400   # a compare.py run evaluated every 100: a table
    python -m research.mechanism --by-step RESULTS_JSON --steps 100,200,300,400 --json   # the same numbers as JSON
    python -m research.mechanism --across-seeds PUSH_JSON         # --push figures of many runs' checkpoints, per step over seeds
    python -m research.mechanism --shares RUN_FOLDER...           # bc's share per step and type, runs pooled by method

It writes nothing, except the --push figures to --out FILE (an existing FILE only with --overwrite).

`advantage_push` draws training-step groups from one policy and computes every comparison method's
advantages on the *same* samples; `choice_push` turns them into the gradient each method puts on the
logits of the token that names the path (`ab`, `bc`, `guess`). So "ARM keeps the rare path alive"
becomes a number with an interval: the push on `bc`'s logit, per sample, and its paired difference to
GRPO's. `by_step_report` reads a compare.py run evaluated every few steps (its run folders'
eval.jsonl) and pairs steps within a run and methods by seed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import arm
import train
from config import make_config
from data import chat_eos_ids, load_problems
from hf import load_model, load_tokenizer
from research import report
from research.methods import ALPHA, HIDDEN_METHODS, HIDDEN_RUN, RUN, method_values
from research.gates import last_prompt_states
from toys.tasks import REGIMES, solution_path, toy_dir


def choice_push(adv: torch.Tensor, chose: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """The gradient that advantages put on the choice logits, per prompt: sum over the group of
    A_g * (1[g chose k] - pi_k), the gradient of sum_g A_g log pi_{choice g} on logit k.
    adv (P, G), chose (P, G, K) one-hot (all zero for a choice outside the K), pi (P, K) -> (P, K)."""
    return (adv[..., None] * (chose - pi[:, None, :])).sum(1)


def advantage_push(methods: tuple[str, ...] | None = None, *, regime: str = "hidden-type",
                   folder: str | Path | None = None, prompts: int = 1024, seed: int = 0,
                   paths: tuple[str, ...] = ("ab", "bc", "guess")) -> dict:
    """What each method's advantages do to the path choice, measured on one policy (the shipped base
    model unless `folder` names another). Training-step groups (compare.py's settings: 16 prompts x 8
    samples, T = 1) are drawn from the training problems; every method's advantages are computed on
    the *same* samples. The choice is the first completion token, a softmax over the vocabulary at
    the last prompt position, so a response that chose path j pushes path p's logit by
    A * (1[j = p] - pi_p(q)) (the gradient of log pi_j(q) on logit p). Per method:

      push[p]   the mean of that over all samples: the direction the method moves p's share on
                average (GRPO's advantages sum to 0 in a group, so its pi term vanishes; ARM's don't)
      push_ci   its 95 % interval over prompts (normal approximation)
      vs_grpo   push[p] minus GRPO's, paired on the same samples, with its interval
      mean_adv  type -> path -> "correct"/"wrong" -> mean advantage and count
    """
    torch.set_num_threads(1)
    methods = tuple(methods or HIDDEN_METHODS)
    base_values = {**RUN, **HIDDEN_RUN, "toy": regime}
    cfg = make_config(base_values)
    cfgs = {m: make_config({**base_values, **method_values(m, ALPHA)}) for m in methods}
    given = folder is not None
    folder = str(folder or toy_dir(regime))
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    model.eval()
    train_problems, _, _ = load_problems(cfg)
    order = torch.randperm(len(train_problems), generator=torch.Generator().manual_seed(seed))[:prompts]
    problems = [train_problems[int(i)] for i in order]
    eos = chat_eos_ids(model, tokenizer, cfg)
    gen = torch.Generator().manual_seed(seed)
    ids = [tokenizer.token_to_id(p) for p in paths]
    P, G = cfg.prompts_per_step, cfg.group_size
    per_prompt = {m: [] for m in methods}  # method -> [(len(paths),) push of each prompt's group]
    tally = {m: {} for m in methods}  # method -> (type, path, verdict) -> [sum of advantages, count]
    for i in range(0, len(problems), P):
        batch = problems[i: i + P]
        with torch.no_grad():
            ro = train.rollout(model, tokenizer, batch, cfg, gen, eos)
            _, logits = last_prompt_states(model, tokenizer, batch)
        rewards = train.compute_rewards(ro.texts, [p["answer"] for p in batch], G)
        c_q, c_o = train.compute_confidences(ro, G, cfg.low_frac)
        seq_lp = arm.mean_logprob(ro.gen.logprobs, ro.gen.mask).view(-1, G).cpu()
        pi = logits.softmax(-1)[:, ids]  # (P, paths): the choice's probabilities per prompt
        first = ro.gen.tokens[:, 0].view(len(batch), G)
        chose = torch.stack([first == t for t in ids], -1).float()  # (P, G, paths)
        keys = [(prob["type"], str(solution_path(ro.texts[p * G + g])), "correct" if rewards[p, g] > 0.5 else "wrong")
                for p, prob in enumerate(batch) for g in range(G)]  # one per sample, in the rows' order
        for m in methods:
            adv = train.compute_advantages(rewards, c_q, c_o, cfgs[m], seq_logprob=seq_lp)
            per_prompt[m] += list(choice_push(adv, chose, pi))
            for key, a in zip(keys, adv.reshape(-1).tolist()):
                s = tally[m].setdefault(key, [0.0, 0])
                s[0] += a
                s[1] += 1

    def mean_ci(rows: list[torch.Tensor]) -> tuple[list[float], list[list[float]]]:
        x = torch.stack(rows) / G  # per prompt, per sample
        mu, se = x.mean(0), x.std(0) / len(rows) ** 0.5
        return ([round(float(v), 5) for v in mu],
                [[round(float(a), 5), round(float(b), 5)] for a, b in zip(mu - 1.96 * se, mu + 1.96 * se)])

    parts = Path(folder).parts[:-1] if Path(folder).name == "policy" else Path(folder).parts
    name = "/".join(parts[-3:] if given else parts[-1:])  # e.g. grpo-seed0/checkpoints/step_000050, no absolute path
    out = {"folder": name, "prompts": len(problems), "group_size": G, "seed": seed, "paths": list(paths),
           "methods": {}}
    for m in methods:
        push, ci = mean_ci(per_prompt[m])
        r = {"push": dict(zip(paths, push)), "push_ci": dict(zip(paths, ci))}
        if m != "grpo" and "grpo" in per_prompt:
            d, dci = mean_ci([a - b for a, b in zip(per_prompt[m], per_prompt["grpo"])])
            r["vs_grpo"], r["vs_grpo_ci"] = dict(zip(paths, d)), dict(zip(paths, dci))
        mean_adv = {}
        for (t, path, verdict), (total, n) in sorted(tally[m].items()):
            mean_adv.setdefault(t, {}).setdefault(path, {})[verdict] = {"mean": round(total / n, 4), "n": n}
        r["mean_adv"] = mean_adv
        out["methods"][m] = r
    return out


def across_seeds(pushes: list[dict], path: str = "bc") -> dict:
    """--push figures of checkpoints named `<method>-seed<k>/checkpoints/step_<n>` (as advantage_push
    names them), grouped by the run's method and step: per advantage method, the mean over seeds of
    its push on `path`'s logit, with its 95 % t-interval over seeds (report.mean_std), and the paired
    difference to GRPO's push on the same samples. The base model (any other name) is kept as is.
    -> {run method or folder: {step: {advantage method: {"push": mean_std, "vs_grpo": mean_std}}}}"""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in pushes:
        parts = r["folder"].split("/")
        run, step = (parts[0].rsplit("-seed", 1)[0], int(parts[-1].split("_")[-1])) \
            if len(parts) == 3 and "-seed" in parts[0] and parts[-1].startswith("step_") else (r["folder"], 0)
        groups.setdefault((run, step), []).append(r)
    out: dict = {}
    for (run, step), rs in sorted(groups.items()):
        cell = {}
        for m in rs[0]["methods"]:
            cell[m] = {"push": report.mean_std([r["methods"][m]["push"][path] for r in rs])}
            if "vs_grpo" in rs[0]["methods"][m]:
                cell[m]["vs_grpo"] = report.mean_std([r["methods"][m]["vs_grpo"][path] for r in rs])
        out.setdefault(run, {})[step] = cell
    return out


def format_across_seeds(summary: dict, path: str = "bc", methods: list[str] | None = None) -> str:
    """across_seeds as a markdown table: one row per run and step, one column per advantage method
    (mean [95 % interval over seeds]; all, or `methods`), then each method minus GRPO, paired."""
    first = next(iter(next(iter(summary.values())).values()))
    methods = [m for m in first if methods is None or m in methods]
    diffs = [m for m in methods if "vs_grpo" in first[m]]
    ci = lambda s: report.fmt(s, 4, sign=True, spread="ci95")
    lines = [f"| policy | step | seeds | " + " | ".join(f"{m}'s push on `{path}`" for m in methods) + " | " +
             " | ".join(f"{m} − grpo" for m in diffs) + " |", "|---" * (3 + len(methods) + len(diffs)) + "|"]
    for run, by_step in summary.items():
        for step, cell in by_step.items():
            lines.append(f"| {run} | {step} | {cell[methods[0]]['push']['n']} | " +
                         " | ".join(ci(cell[m]["push"]) for m in methods) + " | " +
                         " | ".join(ci(cell[m]["vs_grpo"]) for m in diffs) + " |")
    return "\n".join(lines) + "\n(mean over seeds [95 % t-interval over seeds]; one seed: no interval)"


def shares_by_step(folders: list[str | Path], path: str = "bc") -> dict:
    """Run folders (`<method>-seed<k>`, evaluated every few steps) pooled by method: per step, the mean
    over seeds of `path`'s share of all samples and of each problem type's, the per-seed shares, and
    the mean c(o|q) of a correct `ab` and a correct `bc` on B problems (both paths right there).
    -> {method: {step: {"all", "by_type": {type: share}, "seeds": [share], "conf_B": {"ab", "bc"}}}}"""
    rows: dict = {}
    for f in folders:
        method = Path(f).name.rsplit("-seed", 1)[0]
        for line in (Path(f) / "eval.jsonl").read_text().splitlines():
            e = json.loads(line)
            by_type = e.get("by_type", {})
            rows.setdefault(method, {}).setdefault(e["step"], []).append(
                {"all": report.sample_share(e["paths"], path),
                 "by_type": {t: report.sample_share(v["paths"], path) for t, v in by_type.items()},
                 "conf_B": {q: (by_type.get("B", {}).get("paths", {}).get(q) or {}).get("conf_correct") for q in ("ab", "bc")}})
    mean = lambda xs: float(np.mean([x for x in xs if x is not None])) if any(x is not None for x in xs) else None
    return {m: {st: {"all": mean([r["all"] for r in rs]), "seeds": [r["all"] for r in rs],
                     "by_type": {t: mean([r["by_type"].get(t) for r in rs]) for t in rs[0]["by_type"]},
                     "conf_B": {q: mean([r["conf_B"][q] for r in rs]) for q in ("ab", "bc")}}
                for st, rs in sorted(by_step.items())} for m, by_step in rows.items()}


def format_shares(table: dict, path: str = "bc") -> str:
    """shares_by_step as a markdown table."""
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}"
    conf = lambda v: "-" if v is None else f"{v:.3f}"
    lines = [f"| method | step | seeds | `{path}`'s share, % | on B / F / R problems, % | per seed, % | "
             "c(o|q) of a correct ab / bc on B |", "|---" * 7 + "|"]
    for m, by_step in table.items():
        for st, c in by_step.items():
            types = " / ".join(pct(c["by_type"].get(t)) for t in ("B", "F", "R"))
            lines.append(f"| {m} | {st} | {len(c['seeds'])} | {pct(c['all'])} | {types} | "
                         f"{', '.join(pct(v) for v in c['seeds'])} | {conf(c['conf_B']['ab'])} / {conf(c['conf_B']['bc'])} |")
    return "\n".join(lines)


def runs_at_step(results_json: str | Path, step: int) -> dict[str, list[dict]]:
    """method -> its runs as report.py reads them, each with its evaluation at `step` (from the run
    folder's eval.jsonl, written with --eval-every) as its final one: report.finals / paired_diff then
    compare methods, or steps within a run, at that step."""
    res = json.loads(Path(results_json).read_text())
    out = {}
    for m, v in res["methods"].items():
        for r in v["runs"] if m != "base" else []:
            evals = [json.loads(x) for x in (Path(r["out"]) / "eval.jsonl").read_text().splitlines()]
            e = next((e for e in evals if e.get("step") == step), None)
            if e is None:
                raise ValueError(f"{r['out']}/eval.jsonl: no evaluation at step {step}")
            out.setdefault(m, []).append({**r, "final": e})
    return out


def step_row(r: dict, key: str = "pass@32") -> dict:
    """One run's figures at its "final" evaluation: `key`, pass@1, pass@n on R problems and `bc`'s
    share of all samples."""
    f, e = report.finals(r), r["final"]
    return {key: f[key], "pass@1": f["pass@1"], f"pass@{e['n']}|R": f.get(f"pass@{e['n']}|R"),
            "bc_share": report.sample_share(e["paths"], "bc")}


def by_step_report(results_json: str | Path, steps: list[int], key: str = "pass@32") -> dict:
    """For a compare.py run evaluated every few steps: per method and step, the mean +- std over seeds
    of `key`, pass@1, pass@n on R problems and `bc`'s share of all samples; each method minus GRPO at
    each step (paired by seed); and each method's change of `key` between the first and last step
    (paired within each run)."""
    at = {s: runs_at_step(results_json, s) for s in steps}
    flat = {s: {m: {r["seed"]: step_row(r, key) for r in runs} for m, runs in at[s].items()} for s in steps}
    out = {"steps": steps, "means": {}, "minus_grpo": {}, "change": {}}
    for s in steps:
        for m, seeds in flat[s].items():
            out["means"].setdefault(m, {})[s] = {k: report.mean_std([v[k] for v in seeds.values()]) for k in
                                                 next(iter(seeds.values()))}
            if m != "grpo" and "grpo" in flat[s]:
                g = flat[s]["grpo"]
                out["minus_grpo"].setdefault(m, {})[s] = {
                    k: report.mean_std([v[k] - g[seed][k] for seed, v in seeds.items() if seed in g]) for k in (key, "pass@1")}
    first, last = steps[0], steps[-1]
    for m in flat[last]:
        a, b = flat[last][m], flat[first][m]
        out["change"][m] = {k: report.mean_std([a[seed][k] - b[seed][k] for seed in a]) for k in (key, "bc_share")}
        if m != "grpo" and "grpo" in flat[last]:
            gap = lambda s_, seed: flat[s_][m][seed][key] - flat[s_]["grpo"][seed][key]
            out["change"][m]["gap_vs_grpo"] = report.mean_std([gap(last, seed) - gap(first, seed) for seed in a])
    return out


def plot_by_step(results: list[str | Path], path: str | Path, key: str = "pass@32") -> bool:
    """One figure, a column per compare.py run evaluated every few steps (its results.json; the
    column is titled with its regime):
    `key` (top) and `bc`'s share of samples (bottom) against the training step, per method, the mean
    over seeds with its 95 % t-interval as a band; step 0 is the base model. False if matplotlib is
    missing (requirements-plot.txt); the files are read, and refused if broken, before that."""
    panels = []  # (regime, steps, by_step_report, the base model's row), read before anything is drawn
    for results_json in results:
        res = json.loads(Path(results_json).read_text())
        some = next(r for m, v in res["methods"].items() if m != "base" for r in v["runs"])
        steps = [json.loads(x)["step"] for x in (Path(some["out"]) / "eval.jsonl").read_text().splitlines()]
        panels.append((res["regime"], steps, by_step_report(results_json, steps, key),
                       step_row(res["methods"]["base"]["runs"][0], key)))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, ax = plt.subplots(2, len(panels), figsize=(5.5 * len(panels), 7.5), sharey="row", squeeze=False)
    for col, (regime, steps, rep, base) in enumerate(panels):
        for m, by_step in rep["means"].items():
            for row, (k, scale) in enumerate([(key, 1), ("bc_share", 100)]):
                y = np.array([base[k]] + [by_step[s][k]["mean"] for s in steps]) * scale
                h = np.array([0.0] + [by_step[s][k]["ci95"] or 0.0 for s in steps]) * scale
                x = [0] + steps
                ax[row, col].plot(x, y, marker="o", ms=3, color=report.COLORS.get(m),
                                  label=f"{m} ({by_step[steps[0]][k]['n']} seeds)")
                ax[row, col].fill_between(x, y - h, y + h, color=report.COLORS.get(m), alpha=0.15)
        ax[0, col].set(title=regime, ylabel=f"{key} (held-out)")
        ax[1, col].set(xlabel="training step (0: the base model)", ylabel="bc's share of samples, % (log scale)",
                       yscale="log")
        ax[1, col].yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax[0, col].legend(fontsize=8)
    ax[0, 0].set_ylim(top=1.005)  # after every column is drawn: the rows share their axes
    fig.suptitle(f"{key} and the rare path's share over training; bands: 95 % interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def format_by_step(rep: dict) -> str:
    """by_step_report as a markdown table: per method and step, the mean ± SD over seeds; per method
    minus GRPO, the paired mean [95 % interval]; and the change from the first to the last step,
    paired within each run (the gap to GRPO's, for method − GRPO)."""
    steps, first, last = rep["steps"], rep["steps"][0], rep["steps"][-1]
    some = next(iter(rep["means"].values()))[last]
    key, r_key = next(iter(some)), next((k for k in some if k.endswith("|R")), None)
    sd = lambda s, scale=1: report.fmt(s and {k: v * scale if k in ("mean", "std") and v is not None else v
                                              for k, v in s.items()}, 1 if scale == 100 else 3)
    ci = lambda s, scale=1: report.fmt(s and {k: v * scale if k in ("mean", "ci95") and v is not None else v
                                              for k, v in s.items()}, 1 if scale == 100 else 3, sign=True, spread="ci95")
    quantities = [(key, key, 1), ("pass@1", "pass@1", 1)] + \
        ([(r_key, f"{r_key.split('|')[0]}, R problems", 1)] if r_key else []) + \
        [("bc_share", "`bc`'s share of samples, %", 100)]
    lines = ["| method | quantity | " + " | ".join(f"step {s}" for s in steps) +
             f" | step {last} − step {first}, paired |", "|---" * (len(steps) + 3) + "|"]
    for m, by_step in rep["means"].items():
        for k, label, scale in quantities:
            change = ci(rep["change"][m][k], scale) if k in rep["change"].get(m, {}) else ""
            lines.append(f"| {m} | {label} | " + " | ".join(sd(by_step[s][k], scale) for s in steps) + f" | {change} |")
    for m, by_step in rep["minus_grpo"].items():
        for k in (key, "pass@1"):
            change = ci(rep["change"][m]["gap_vs_grpo"]) if k == key else ""
            lines.append(f"| {m} − grpo | {k} | " + " | ".join(ci(by_step[s][k]) for s in steps) + f" | {change} |")
    n = some[key]["n"]
    return "\n".join(lines) + (f"\n(mean ± SD over {n} seeds; method − grpo: paired by seed, mean [95 % interval]; "
                               f"the last column: step {last} minus step {first} within each run, mean [95 % interval])")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.mechanism", description="What the methods do on the hidden-type "
                                 "toy: pushes on the path choice, and a compare.py run step by step. Writes nothing "
                                 "unless --out FILE (the --push figures as JSON; an existing file only with --overwrite).")
    ap.add_argument("--toy", default="hidden-type", choices=[k for k, r in REGIMES.items() if r.get("typed")])
    ap.add_argument("--push", nargs="*", metavar="POLICY", help="each comparison method's push on the path choice "
                    "(advantage_push), measured on the shipped model or on these policy folders")
    ap.add_argument("--prompts", type=int, default=1024, help="--push: training prompts per policy (default 1024)")
    ap.add_argument("--out", metavar="FILE", help="--push: also write the JSON to FILE (refused if FILE exists, "
                    "unless --overwrite)")
    ap.add_argument("--overwrite", action="store_true", help="--out: replace FILE if it exists")
    ap.add_argument("--by-step", metavar="RESULTS_JSON", help="a compare.py run evaluated every few steps "
                    "(--eval-every): a table per method and step, and the change between the first and last of --steps")
    ap.add_argument("--steps", default="200,400", help="--by-step: the steps to read (default 200,400)")
    ap.add_argument("--json", action="store_true", help="--by-step: print by_step_report's JSON instead of the table")
    ap.add_argument("--figure", nargs="+", metavar=("PNG", "RESULTS_JSON"), help="draw pass@32 and bc's share "
                    "against the step, a column per compare.py run evaluated every few steps, to PNG (refused if "
                    "PNG exists, unless --overwrite; needs requirements-plot.txt)")
    ap.add_argument("--across-seeds", metavar="PUSH_JSON", help="a --push --out FILE of many runs' checkpoints "
                    "(<method>-seed<k>/checkpoints/step_<n>): the push on `bc` per run method and step, over seeds")
    ap.add_argument("--methods", help="--push, --across-seeds: only these advantage methods (comma-separated; "
                    "default: all of the hidden-type comparison's)")
    ap.add_argument("--shares", nargs="+", metavar="RUN_FOLDER", help="run folders <method>-seed<k> evaluated "
                    "every few steps: bc's share per step, overall and per problem type, pooled by method")
    a = ap.parse_args(argv)
    methods = a.methods.split(",") if a.methods else None
    if methods and (bad := [m for m in methods if m not in HIDDEN_METHODS]):
        ap.error(f"--methods: unknown {', '.join(bad)} (choose from {', '.join(HIDDEN_METHODS)})")
    if a.push is None and not a.by_step and not a.across_seeds and not a.figure and not a.shares:
        ap.error("give --push [POLICY ...], --by-step RESULTS_JSON, --figure PNG RESULTS_JSON..., --across-seeds "
                 "PUSH_JSON or --shares RUN_FOLDER...")
    if a.shares:
        try:
            print(format_shares(shares_by_step(a.shares)))
        except (OSError, ValueError, KeyError) as e:
            print(f"mechanism.py: error: --shares: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        return 0
    if a.figure:
        if len(a.figure) < 2:
            ap.error("--figure: give the PNG to write, then one or more results.json")
        if Path(a.figure[0]).exists() and not a.overwrite:
            print(f"mechanism.py: error: --figure {a.figure[0]}: already exists; add --overwrite to replace it",
                  file=sys.stderr)
            return 2
        try:
            drawn = plot_by_step(a.figure[1:], a.figure[0])
        except (OSError, ValueError, KeyError, StopIteration) as e:
            print(f"mechanism.py: error: --figure: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        print(f"written to {a.figure[0]}" if drawn else "mechanism.py: matplotlib is missing "
              "(pip install -r requirements-plot.txt); nothing drawn", file=sys.stdout if drawn else sys.stderr)
        return 0 if drawn else 1
    if a.across_seeds:
        try:
            print(format_across_seeds(across_seeds(json.loads(Path(a.across_seeds).read_text())), methods=methods))
        except (OSError, ValueError, KeyError, IndexError, StopIteration) as e:
            print(f"mechanism.py: error: --across-seeds {a.across_seeds}: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        return 0
    if a.by_step:
        try:
            steps = [int(x) for x in a.steps.split(",")]
        except ValueError:
            ap.error(f"--steps: comma-separated step numbers, got {a.steps!r}")
        try:
            rep = by_step_report(a.by_step, steps)
        except (OSError, ValueError, KeyError) as e:
            print(f"mechanism.py: error: --by-step {a.by_step}: {e}", file=sys.stderr)
            return 2
        print(json.dumps(rep, indent=1) if a.json else format_by_step(rep))
        return 0
    if a.out and Path(a.out).exists() and not a.overwrite:
        print(f"mechanism.py: error: --out {a.out}: already exists; add --overwrite to replace it, or give another "
              "--out", file=sys.stderr)
        return 2
    res = [advantage_push(methods=methods and tuple(methods), regime=a.toy, folder=f, prompts=a.prompts) for f in (a.push or [None])]
    for r in res:
        print(f"{r['folder']}: push on the choice logits ({r['prompts']} prompts x {r['group_size']}), "
              f"method - grpo [95 % interval over prompts]")
        for m, v in r["methods"].items():
            cells = ", ".join(f"{p} {v['push'][p]:+.4f}" + (f" ({v['vs_grpo'][p]:+.4f} [{v['vs_grpo_ci'][p][0]:+.4f}, "
                                                            f"{v['vs_grpo_ci'][p][1]:+.4f}])" if "vs_grpo" in v else "")
                              for p in r["paths"])
            print(f"  {m:26s} {cells}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1) + "\n")
        print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
