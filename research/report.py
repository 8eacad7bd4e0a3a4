"""A comparison's numbers over seeds and how they are shown: statistics, claims, tables, figure.

compare.py runs the comparison and calls these; they read its results.json layout (per-run "final"
evaluations and training "curve"s, grouped by method) and never train anything.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import arm

SCALARS = ("accuracy", "entropy", "distinct_correct", "conf_o_std_correct", "response_len")
CURVES = ("entropy", "accuracy")  # per training step, from metrics.jsonl
TABLES_MD = "tables" + ".md"  # the printed tables, beside results.json (in two parts: tests/test_docs.py reads
#                               every name ending in .md as a citation of a file in the repository)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)

# ----------------------------------------------------------------------------------------------
# statistics over seeds


def mean_std(xs: list[float | None]) -> dict:
    """{"mean", "std" (sample, ddof 1; None for one value), "ci95" (half-width of the 95 % t-interval
    of the mean; None for one value), "n"} over the values that are not None."""
    v = np.array([x for x in xs if x is not None], dtype=np.float64)
    if len(v) == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    if len(v) == 1:
        return {"mean": float(v[0]), "std": None, "ci95": None, "n": 1}
    sd = float(v.std(ddof=1))
    t = T975[len(v) - 2] if len(v) - 1 <= len(T975) else 1.96
    return {"mean": float(v.mean()), "std": sd, "ci95": t * sd / math.sqrt(len(v)), "n": int(len(v))}


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below this point; use the symmetry
        return 1.0 - _betainc(b, a, 1.0 - x)
    lead = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)) / a
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1.0 + num / c if abs(1.0 + num / c) > 1e-300 else 1e-300
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return lead * (f - 1.0)


def t_pvalue(s: dict | None) -> float | None:
    """Two-sided p-value of the one-sample t-test "mean = 0" for a mean_std summary (None below 2 values).
    p < 0.05 exactly when the 95 % t-interval excludes 0."""
    if not s or s.get("n", 0) < 2 or s["mean"] is None or s["std"] is None:
        return None
    if s["std"] == 0:
        return 1.0 if s["mean"] == 0 else 0.0
    v = s["n"] - 1
    t = s["mean"] / (s["std"] / math.sqrt(s["n"]))
    return _betainc(v / 2, 0.5, v / (v + t * t))


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjustment over one family: key -> adjusted p (None stays None). It keeps the
    chance of any false "holds" in the family at or below the level, whatever the dependence."""
    keys = sorted((k for k in pvalues if pvalues[k] is not None), key=lambda k: pvalues[k])
    out, running = dict.fromkeys(pvalues), 0.0
    for i, k in enumerate(keys):
        running = max(running, min(1.0, (len(keys) - i) * pvalues[k]))
        out[k] = running
    return out


def all_pass_at_k(e: dict) -> dict[str, float]:
    """pass@k for every k = 1..n from the per-prompt correct counts (arm.pass_at_k)."""
    n, counts = e["n"], np.array(e["n_correct"])
    return {str(k): float(np.mean(arm.pass_at_k(np.full_like(counts, n), counts, np.full_like(counts, k))))
            for k in range(1, n + 1)}


def path_shares(e: dict) -> dict[str, float]:
    """Share of the correct samples taken by each solution path (None = unrecognised)."""
    total = sum(s["correct"] for s in e["paths"].values())
    return {p: s["correct"] / total if total else 0.0 for p, s in e["paths"].items()}


def sample_share(paths: dict, path: str) -> float:
    """`path`'s share of all the samples in a path tally (an evaluation's "paths", or one type's): its
    correct and wrong samples over everyone's; 0.0 for a path absent from it, or no samples."""
    total = sum(s["correct"] + s["wrong"] for s in paths.values())
    s = paths.get(path)
    return (s["correct"] + s["wrong"]) / total if s and total else 0.0


def malformed(e: dict) -> float:
    """Share of all samples whose path is unrecognised (path "None": malformed or off-format)."""
    return sample_share(e["paths"], "None")


def by_type(e: dict) -> dict[str, float]:
    """hidden-type: per problem type T, pass@k at k = 1, 2, 4, ..., n ("pass@4|T"), each path's share
    of all the type's samples ("choice:P|T") and its accuracy there ("acc:P|T")."""
    out = {}
    for t, v in sorted(e.get("by_type", {}).items()):
        out.update({f"pass@{k}|{t}": x for k, x in v["pass@k"].items()})
        for p, s in v["paths"].items():
            out[f"choice:{p}|{t}"] = sample_share(v["paths"], p)
            out[f"acc:{p}|{t}"] = s["correct"] / (s["correct"] + s["wrong"])
    return out


def finals(r: dict) -> dict:
    """One run's final numbers, flat: pass@k for every k, the scalars, the correct-path shares, the
    share of malformed samples, and (hidden-type) the figures per problem type."""
    e = r["final"]
    p = all_pass_at_k(e)
    return {**{f"pass@{k}": v for k, v in p.items()}, "pass@n-pass@1": p[str(e["n"])] - p["1"],
            **{k: e.get(k) for k in SCALARS}, **{f"share:{q}": v for q, v in path_shares(e).items()},
            "malformed": malformed(e), **by_type(e)}


def summarize(runs: list[dict]) -> dict:
    """Mean +- std over a method's runs of every final number, and of the curves step by step."""
    flat = [finals(r) for r in runs]
    keys = list(dict.fromkeys(k for f in flat for k in f))
    out = {k: mean_std([f.get(k, 0.0 if k.startswith(("share:", "choice:")) else None) for f in flat]) for k in keys}
    if all("curve" in r for r in runs):
        n = min(len(r["curve"]["step"]) for r in runs)
        out["curve"] = {"step": runs[0]["curve"]["step"][:n]}
        for k in CURVES:
            rows = np.array([r["curve"][k][:n] for r in runs], dtype=np.float64)  # (seeds, steps)
            out["curve"][k] = {"mean": rows.mean(0).tolist(), "std": rows.std(0, ddof=1).tolist() if len(runs) > 1 else None}
    return out


def paired_diff(a: list[dict], b: list[dict]) -> dict:
    """a - b seed by seed (same seed = same prompts and sampling seed): mean, std, 95 % interval."""
    by_seed = {r["seed"]: finals(r) for r in b}
    pairs = [(finals(r), by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
    keys = list(dict.fromkeys(k for x, y in pairs for k in [*x, *y]))
    share = lambda f, k: f.get(k, 0.0) if k.startswith(("share:", "choice:")) else f.get(k)  # a path never taken: 0
    return {k: mean_std([share(x, k) - share(y, k) for x, y in pairs
                         if share(x, k) is not None and share(y, k) is not None]) for k in keys}


def recompute(res: dict) -> dict:
    """Summaries and paired differences from a results.json's per-run values, by this code (--plot)."""
    ms = res["methods"]
    for m in ms.values():
        m["summary"] = summarize(m["runs"])
    res["minus_grpo"] = {name: paired_diff(m["runs"], ms["grpo"]["runs"]) for name, m in ms.items()
                         if name not in ("base", "grpo")}
    return res


# ----------------------------------------------------------------------------------------------
# reporting: markdown tables and the figure


def fmt(s: dict | None, digits: int = 3, sign: bool = False, spread: str = "std") -> str:
    if not s or s["mean"] is None:
        return "-"
    m = f"{s['mean']:+.{digits}f}" if sign else f"{s['mean']:.{digits}f}"
    if s.get(spread) is None:
        return m
    return f"{m} ± {s[spread]:.{digits}f}" if spread == "std" else \
        f"{m} [{s['mean'] - s[spread]:+.{digits}f}, {s['mean'] + s[spread]:+.{digits}f}]"


ROWS = [("entropy", "token entropy (final)"), ("distinct_correct", "distinct correct paths / prompt"),
        ("conf_o_std_correct", "std c(o|q), correct samples"), ("response_len", "response length (tokens)")]


def typed_order(key: str) -> tuple:
    """Table order of the per-type rows: each path's accuracy and choice share by type, then pass@k
    type by type with k rising (pass@2|B after pass@1|B, not after pass@16|B)."""
    name, t = key.split("|", 1)
    if name.startswith("pass@") and name[5:].isdigit():
        return (1, t, int(name[5:]))
    return (0, name, t)


def format_tables(res: dict) -> str:
    """Per regime: the methods (mean ± std), their paired differences to GRPO (mean [95 % interval]),
    the correct-path shares, and the training curves."""
    ms = res["methods"]
    names = [m for m in ms if m != "base"]
    n = res["eval"]["n"]
    ks = [k for k in (1, 2, 4, 8, 16, 32) if k <= n] + ([n] if n not in (1, 2, 4, 8, 16, 32) else [])
    rows = [(f"pass@{k}", f"pass@{k}", 3) for k in ks] + [("pass@n-pass@1", f"pass@{n} − pass@1", 3)] + \
        [(k, label, 1 if k == "response_len" else 3) for k, label in ROWS] + [("malformed", "malformed samples (share)", 3)]
    typed = sorted((k for k in ms["base"]["summary"] if "|" in k), key=typed_order)  # hidden-type: per problem type
    rows += [(k, k, 3) for k in typed]
    head = f"regime {res['regime']}, mean ± std over {len(res['seeds'])} seeds"
    lines = [f"| {head} | base | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for key, label, digits in rows:
        lines.append(f"| {label} | {fmt(ms['base']['summary'].get(key), digits)} | "
                     + " | ".join(fmt(ms[m]['summary'].get(key), digits) for m in names) + " |")
    diffs = [m for m in names if m in res["minus_grpo"]]
    if diffs:
        lines += ["", "| method − GRPO, paired: mean [95 % interval] | " + " | ".join(diffs) + " |",
                  "|---" * (len(diffs) + 1) + "|"]
        shares = sorted({k for m in diffs for k in res["minus_grpo"][m] if k.startswith("share:")})
        untyped = [r for r in rows if "|" not in r[0]]  # the per-type rows come last, after the bootstrap
        for key, label, digits in untyped + [(k, f"share of correct samples, path {k[6:]}", 3) for k in shares]:
            lines.append(f"| {label} | " + " | ".join(fmt(res["minus_grpo"][m].get(key), digits, True, "ci95")
                                                      for m in diffs) + " |")
        for k in ("pass@1", f"pass@{n}"):  # the interval that also counts the sampling of the held-out prompts
            b = {m: bootstrap_diff(res, m, k) for m in diffs}
            lines.append(f"| {k}, bootstrap over seeds and prompts | " + " | ".join(
                f"{b[m]['mean']:+.3f} [{b[m]['lo']:+.3f}, {b[m]['hi']:+.3f}]" for m in diffs) + " |")
        typed = sorted((k for k in res["minus_grpo"][diffs[0]] if "|" in k), key=typed_order)
        for key in typed:  # hidden-type: per problem type
            lines.append(f"| {key} | " + " | ".join(fmt(res["minus_grpo"][m].get(key), 3, True, "ci95") for m in diffs) + " |")
    paths = sorted({k[6:] for m in ms.values() for k in m["summary"] if k.startswith("share:")})
    if paths:
        lines += ["", "| share of correct samples per path | base | " + " | ".join(names) + " |",
                  "|---" * (len(names) + 2) + "|"]
        for p in paths:
            lines.append(f"| {p} | " + " | ".join(fmt(ms[m]["summary"].get(f"share:{p}")) for m in ["base"] + names) + " |")
    steps = ms[names[0]]["summary"]["curve"]["step"] if names else []
    if steps:
        at = sorted({steps[0], *(steps[int(len(steps) * f) - 1] for f in (0.25, 0.5, 0.75, 1.0))})
        lines += ["", "| training rollouts (mean over seeds) | " + " | ".join(f"step {s}" for s in at) + " |",
                  "|---" * (len(at) + 1) + "|"]
        for name in names:
            c = ms[name]["summary"]["curve"]
            for k in CURVES:
                lines.append(f"| {name} {k} | " + " | ".join(f"{c[k]['mean'][steps.index(s)]:.3f}" for s in at) + " |")
    return "\n".join(lines)


def verdict(d: dict | None) -> str:
    """'holds' when the 95 % interval of a paired difference lies above 0, 'against' when below,
    'undecided' otherwise (or with one seed)."""
    if not d or d["mean"] is None or d["ci95"] is None:
        return "undecided"
    return "holds" if d["mean"] - d["ci95"] > 0 else "against" if d["mean"] + d["ci95"] < 0 else "undecided"


def claims(res: dict) -> dict[str, dict[str, str]]:
    """METHOD.md's three claims per method against GRPO, by research/results/PREDICTIONS.md's decision rules:
    1 entropy kept (final entropy higher); 2 the pass@k gain grows with k ((pass@n - pass@1) higher)
    with pass@1 no worse (its interval not wholly below 0); 3 more distinct correct paths."""
    out = {}
    for m, d in res["minus_grpo"].items():
        two = verdict(d["pass@n-pass@1"])
        if two == "holds" and verdict(d["pass@1"]) == "against":
            two = "against"  # the gain at large k comes from a lower pass@1
        out[m] = {"1 entropy": verdict(d["entropy"]), "2 pass@k gain grows": two,
                  "3 distinct paths": verdict(d["distinct_correct"])}
    return out


CLAIM_KEYS = (("1 entropy", "entropy"), ("2 pass@k gain grows", "pass@n-pass@1"), ("3 distinct paths", "distinct_correct"))


def claims_adjusted(res: dict, level: float = 0.05) -> dict[str, dict[str, dict]]:
    """Every (method, claim) of a regime as one family: the raw verdict (claims()), the t-test p, Holm's
    adjusted p, and the verdict at the adjusted p (claim 2's pass@1 condition applied as in claims())."""
    raw = claims(res)
    p = {(m, c): t_pvalue(res["minus_grpo"][m][key]) for m in raw for c, key in CLAIM_KEYS}
    adj = holm(p)
    out = {}
    for m in raw:
        out[m] = {}
        for c, key in CLAIM_KEYS:
            v = raw[m][c]
            a = v if adj[(m, c)] is not None and adj[(m, c)] < level else "undecided"
            out[m][c] = {"raw": v, "p": p[(m, c)], "p_holm": adj[(m, c)], "holm": a}
    return out


def format_claims(res: dict) -> str:
    """One line per method: each claim's verdict with the paired difference and its 95 % interval, and
    the verdict after Holm's correction over the regime's whole family of claims."""
    adj = claims_adjusted(res)
    lines = [f"| {res['regime']}: method vs GRPO | " + " | ".join(k for k, _ in CLAIM_KEYS) + " | pass@1 |", "|---" * 5 + "|"]
    for m, c in adj.items():
        d = res["minus_grpo"][m]
        cell = lambda k, key: (f"{c[k]['raw']} / Holm: {c[k]['holm']} ({fmt(d[key], 3, True, 'ci95')}; "
                               f"p {c[k]['p']:.3f}, adj. {c[k]['p_holm']:.3f})" if c[k]["p"] is not None
                               else f"{c[k]['raw']} ({fmt(d[key], 3, True, 'ci95')})")
        lines.append(f"| {m} | " + " | ".join(cell(k, key) for k, key in CLAIM_KEYS)
                     + f" | {fmt(d['pass@1'], 3, True, 'ci95')} |")
    n = sum(len(c) for c in adj.values())
    return "\n".join(lines) + f"\n(raw: each claim at 5 %; Holm: the {n} claims of this regime as one family at 5 %)"


def bootstrap_diff(res: dict, method: str, key: str = "pass@1", draws: int = 2000, seed: int = 0) -> dict:
    """method - GRPO for a pass@k (key "pass@K"), with a 95 % percentile interval from a bootstrap over
    seeds *and* prompts: each draw resamples the seeds and, apart, the held-out prompts (the same
    prompts for both methods and every seed, so the pairing is kept). The t-interval conditions on the
    one set of prompts; this one also counts their sampling."""
    k = int(key.split("@")[1])
    runs = {r["seed"]: r for r in res["methods"][method]["runs"]}
    ref = {r["seed"]: r for r in res["methods"]["grpo"]["runs"]}
    seeds = sorted(set(runs) & set(ref))
    n = res["eval"]["n"]
    per_prompt = lambda r: arm.pass_at_k(np.full(len(r["final"]["n_correct"]), n), np.array(r["final"]["n_correct"]),
                                         np.full(len(r["final"]["n_correct"]), k))
    d = np.stack([per_prompt(runs[s]) - per_prompt(ref[s]) for s in seeds])  # (seeds, prompts)
    rng = np.random.default_rng(seed)
    S, P = d.shape
    means = np.array([d[rng.integers(0, S, S)][:, rng.integers(0, P, P)].mean() for _ in range(draws)])
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi), "draws": draws}


COLORS = {"base": "black", "grpo": "tab:blue", "arm": "tab:red", "arm-correct-only": "tab:orange",
          "arm-centred": "tab:green", "arm-centred-correct-only": "tab:purple", "arm-centred-correct-only@10": "tab:brown",
          "arm@0.3": "tab:pink", "arm@3": "tab:olive", "unlikely": "tab:cyan"}  # one colour per method, none shared


def plot(res: dict, path: Path) -> bool:
    """Entropy and accuracy over training, pass@k vs k, and each method's paired pass@k gain over
    GRPO vs k with its 95 % interval; False if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ms = res["methods"]
    names = [m for m in ms if m != "base"]
    spare = iter(["tab:gray", "gold", "navy", "lime", "teal", "maroon"])  # methods COLORS does not name
    colors = {m: COLORS.get(m) or next(spare, None) for m in ["base"] + names}
    color = lambda m: colors[m]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    for col, k in enumerate(CURVES):
        for m in names:
            c = ms[m]["summary"]["curve"]
            x, y = np.array(c["step"]), np.array(c[k]["mean"])
            ax[0, col].plot(x, y, color=color(m), lw=2 if m in ("grpo", "arm") else 1, label=m)
            if c[k]["std"] is not None and m in ("grpo", "arm"):
                s = np.array(c[k]["std"])
                ax[0, col].fill_between(x, y - s, y + s, color=color(m), alpha=0.15)
        ax[0, col].set(xlabel="training step", ylabel=f"{k} (training rollouts)", title=f"{k} over training")
        ax[0, col].legend(fontsize=7)
    ks = list(range(1, res["eval"]["n"] + 1))
    for m in ["base"] + names:
        s = ms[m]["summary"]
        ax[1, 0].plot(ks, [s[f"pass@{k}"]["mean"] for k in ks], color=color(m), lw=2 if m in ("grpo", "arm") else 1,
                      ls="--" if m == "base" else "-", label=m)
    ax[1, 0].set_xscale("log", base=2)
    ax[1, 0].set(xlabel="k", ylabel="pass@k (held-out)", title="pass@k vs k (mean over seeds)")
    ax[1, 0].legend(fontsize=7)
    for m in res["minus_grpo"]:
        d = res["minus_grpo"][m]
        y = np.array([d[f"pass@{k}"]["mean"] for k in ks])
        h = np.array([d[f"pass@{k}"]["ci95"] or 0.0 for k in ks])
        ax[1, 1].plot(ks, y, color=color(m), label=m)
        ax[1, 1].fill_between(ks, y - h, y + h, color=color(m), alpha=0.12)
    ax[1, 1].axhline(0, color="black", lw=0.8)
    ax[1, 1].set_xscale("log", base=2)
    ax[1, 1].set(xlabel="k", ylabel="pass@k − GRPO's (paired)", title="gain over GRPO, 95 % interval over seeds")
    ax[1, 1].legend(fontsize=7)
    fig.suptitle(f"regime {res['regime']}: {len(res['seeds'])} seeds; held-out {len(res['eval']['prompts'])} prompts "
                 f"x {res['eval']['n']} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def report(res: dict, out: Path, tables: bool = False) -> None:
    """Print the tables and draw out/compare.png (or say how to get it). With tables, also write what
    is printed to out/TABLES_MD: compare.py does so whenever it writes out/results.json, so the two agree."""
    text = (format_claims(res) + "\n\n" if res["minus_grpo"] else "") + format_tables(res) + \
        f"\n\n{res['eval']['n']} samples on each of {len(res['eval']['prompts'])} held-out prompts; " \
        f"wall time {res['wall_s']:.0f} s; {out / 'results.json'}"
    print()
    print(text)
    if tables:
        head = (f"# {res['regime']} comparison: the tables\n\nPrinted by `python -m research.compare --plot "
                f"{out / 'results.json'}` (recomputed from the per-run values), written with results.json. "
                "\"±\" is the SD over seeds; \"[a, b]\" a paired 95 % t-interval.\n\n")
        tmp = out / f"{TABLES_MD}.tmp"
        tmp.write_text(head + text + "\n")
        tmp.replace(out / TABLES_MD)
        print(f"tables: {out / TABLES_MD}")
    if plot(res, out / "compare.png"):
        print(f"figure: {out / 'compare.png'}")
    else:
        print("figure: matplotlib is not installed: `pip install -r requirements-plot.txt`, then "
              f"`python -m research.compare --plot {out / 'results.json'}` draws it from the results (no retraining)")


def beside_stored(runs: list[dict], out_root: Path) -> str:
    """The rerun cells next to the stored cells of the same (regime, method, seed)."""
    lines = ["| regime | method | seed | metric | this run | stored | stored mean ± std over seeds |", "|---" * 7 + "|"]
    for r in runs:
        path = out_root / r["regime"] / "results.json"
        stored = json.loads(path.read_text()) if path.is_file() else {"methods": {}}
        m = stored["methods"].get(r["method"], {"runs": [], "summary": {}})
        cell = next((finals(s) for s in m["runs"] if s["seed"] == r["seed"]), {})
        mine = finals(r)
        for key in ("pass@1", "pass@8", "pass@32", "entropy", "distinct_correct"):
            if key in mine:
                v = cell.get(key)
                lines.append(f"| {r['regime']} | {r['method']} | {r['seed']} | {key} | {mine[key]:.3f} | "
                             f"{'-' if v is None else f'{v:.3f}'} | {fmt(m['summary'].get(key))} |")
    return "\n".join(lines) + f"\n(stored: {out_root}/<regime>/results.json; CPU numbers differ between processors)"
