"""The hidden-type toy's gates and probes: does a build (and a GRPO pilot) have the properties the
comparison needs? The task itself is toys/hidden_type.py; the build, toys/build.py.

    python -m research.gates                      # measure the gates of toys/hidden-type/ -> runs/gates-hidden-type-<time>/
    python -m research.gates --write-build-json   # ... and store them in toys/hidden-type/BUILD.json
    python -m research.gates --toy shown-type     # the same for the control (type written in the prompt)
    python -m research.gates --toy hidden-type-r20   # the same for hidden-type with R 20 % of problems
    python -m research.gates --toy hidden-type --model runs/build-hidden-type-<time>   # a rebuild's gates
    python -m research.gates --pilot runs/pilot/hidden-type/results.json   # a GRPO pilot's gates, per seed and step

The gates (`gates`, stored in BUILD.json): accuracy with the path forced per path x type at T = 1
and T = 0.05; the choice's probabilities per type (exact, from the logits at the last prompt
position); base pass@k overall and per type; linear and small-MLP probes of F vs R on the hidden
state at the last prompt position, at every layer. The pilot's gates (`pilot_report`): research/results/PREDICTIONS.md
addendum 3.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import train
from config import make_config
from data import chat_eos_ids, load_problems
from hf import ModelLoadError, load_model, load_tokenizer
from research.compare import fresh_folder
from research.report import sample_share
from toys.build import evaluate as toy_evaluate
from toys.build import forced_accuracy
from toys.hidden_type import TYPES, VALID
from toys.tasks import REGIMES, make_problems, problems_by_type, toy_dir

@torch.no_grad()
def last_prompt_states(model, tokenizer, problems: list[dict]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Hidden states at the last prompt position (where the path's name is chosen), after the
    embeddings and after every layer -> [(N, C) per layer], and the choice logits (N, vocab)."""
    states = []
    hooks = [model.embed_tokens.register_forward_hook(lambda m, i, o: states.append(o))]
    hooks += [layer.register_forward_hook(lambda m, i, o: states.append(o)) for layer in model.layers]
    ids = [tokenizer.encode(p["prompt"]).ids for p in problems]
    if len({len(x) for x in ids}) != 1:  # prompts differ in length only if the numbers do; not in these regimes
        raise ValueError("last_prompt_states: prompts of one length expected")
    was_training = model.training
    model.eval()
    try:
        logits = model(torch.tensor(ids))[:, -1]
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [s[:, -1].float() for s in states], logits.float()


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve: the chance that a random positive scores above a random negative."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    return float(((pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()).mean())


def probe(x: torch.Tensor, y: torch.Tensor, *, hidden: int = 0, steps: int = 500, seed: int = 0) -> float:
    """Held-out AUC of a probe trained on the first half of (x, y), scored on the second half:
    logistic regression (hidden = 0) or an MLP with one hidden layer; standardised inputs, AdamW
    with weight decay, full batch."""
    n = x.shape[0] // 2
    mu, sd = x[:n].mean(0), x[:n].std(0) + 1e-6
    x = (x - mu) / sd
    d = x.shape[1]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Linear(d, 1) if hidden == 0 else torch.nn.Sequential(
            torch.nn.Linear(d, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x[:n]).squeeze(-1), y[:n].float())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return auc(net(x[n:]).squeeze(-1), y[n:])


def probes(model, tokenizer, n: int, seed: int, regime: str) -> dict:
    """F vs R at the last prompt position, per layer (0 = embeddings): linear and MLP (64) probe AUCs,
    trained on n problems of each type and scored on n other ones."""
    by_type = problems_by_type(2 * n, seed, regime)
    f, r = by_type["F"], by_type["R"]
    order = [f[i // 2] if i % 2 == 0 else r[i // 2] for i in range(4 * n)]  # F, R interleaved: both halves balanced
    y = torch.tensor([1 if p["type"] == "R" else 0 for p in order])
    states, _ = last_prompt_states(model, tokenizer, order)
    return {"n_train_per_type": n, "n_test_per_type": n,
            "linear": [round(probe(s, y), 3) for s in states],
            "mlp64": [round(probe(s, y, hidden=64, steps=1000), 3) for s in states]}


def choice_shares(model, tokenizer, by_type: dict[str, list[dict]], paths=("ab", "bc", "guess")) -> dict:
    """type -> path -> mean probability of choosing the path (softmax at T = 1 over the whole
    vocabulary at the last prompt position; what is left is the chance of no path name)."""
    ids = [tokenizer.token_to_id(p) for p in paths]
    out = {}
    for t in TYPES:
        _, logits = last_prompt_states(model, tokenizer, by_type[t])
        probs = logits.softmax(-1)[:, ids].mean(0)
        out[t] = {p: round(float(v), 4) for p, v in zip(paths, probs)}
    return out


def gates(regime: str = "hidden-type", *, folder: str | Path | None = None, seed: int = 777, n_per_type: int = 64,
          n_samples: int = 32, probe_n: int = 400, log=print) -> dict:
    """Measure a shipped build against the gates (issue 18) and return the figures."""
    t0 = time.time()
    torch.set_num_threads(1)
    folder = folder or toy_dir(regime)
    model, tokenizer = load_model(str(folder)), load_tokenizer(str(folder))
    by_type = problems_by_type(n_per_type, seed, regime)
    out = {"seed": seed, "problems_per_type": n_per_type, "samples": n_samples}
    out["forced_T1"] = forced_accuracy(model, tokenizer, by_type, n_samples, temperature=1.0, seed=seed)
    out["forced_T0.05"] = forced_accuracy(model, tokenizer, by_type, 4, temperature=0.05, seed=seed)
    log(f"forced-path accuracy, T = 1: {json.dumps(out['forced_T1'])}")
    log(f"forced-path accuracy, T = 0.05: {json.dumps(out['forced_T0.05'])}")
    out["choice"] = choice_shares(model, tokenizer, by_type)
    log(f"choice probabilities per type: {json.dumps(out['choice'])}")
    pk = {}
    for t in TYPES:
        ev = toy_evaluate(model, tokenizer, by_type[t], n_samples, seed=seed + 1, ks=(1, 2, 4, 8, 16, 32))
        pk[t] = {k: round(v, 4) for k, v in ev.items() if k.startswith("pass@")}
        pk[t]["style_freq"] = {k: round(v, 4) for k, v in ev["style_freq"].items()}
    uniform = make_problems(3 * n_per_type, seed + 3, "heldout", regime)  # every type, N included
    ev = toy_evaluate(model, tokenizer, uniform, n_samples, seed=seed + 1, ks=(1, 2, 4, 8, 16, 32))
    pk["all"] = {k: round(v, 4) for k, v in ev.items() if k.startswith("pass@")}
    out["base_pass"] = pk
    log(f"base pass@k per type: {json.dumps(pk)}")
    out["probes"] = probes(model, tokenizer, probe_n, seed + 2, regime)
    log(f"probes F vs R, AUC per layer (0 = embeddings): {json.dumps(out['probes'])}")
    out["verdicts"] = verdicts(out, regime)
    out["seconds"] = round(time.time() - t0, 1)
    log(f"gates: {json.dumps(out['verdicts'])}")
    return out


def confidence_table(regime: str = "hidden-type", eval_prompts: int = 128, n: int = 32,
                     folder: str | Path | None = None) -> dict:
    """The base model on the comparison's held-out prompts (train.evaluate, the same call every run's
    final evaluation makes): c(q) over the prompts, and per type x path the samples correct / wrong
    with their mean c(o|q). For the pre-registration (research/results/PREDICTIONS.md)."""
    torch.set_num_threads(1)
    cfg = make_config({"toy": regime, "eval_prompts": eval_prompts, "eval_n": n})
    folder = str(folder or toy_dir(regime))
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    _, held, path_fn = load_problems(cfg)
    eos = chat_eos_ids(model, tokenizer, cfg)
    e = train.evaluate(model, tokenizer, held, cfg, path_fn=path_fn, eos_ids=eos)
    ro = train.rollout(model, tokenizer, held, cfg, torch.Generator().manual_seed(0), eos, G=1)
    c_q, _ = train.compute_confidences(ro, 1, cfg.low_frac)
    return {"c_q_mean": float(c_q.mean()), "c_q_std": float(c_q.std()), "pass@k": e["pass@k"],
            "entropy": e["entropy"], "paths": e["paths"], "by_type": e["by_type"]}


def pilot_figures(e: dict, base: dict) -> dict:
    """One GRPO pilot evaluation (train.evaluate's dict) against the base model's: the pilot's gates."""
    share = lambda ev, path, t: sample_share(ev["by_type"][t]["paths"], path)
    ab_r = e["by_type"]["R"]["paths"].get("ab", {"correct": 0, "wrong": 0})
    n = str(e["n"])
    out = {"pass@1_rise": e["pass@k"]["1"] - base["pass@k"]["1"], f"pass@{n}_fall": base["pass@k"][n] - e["pass@k"][n],
           "bc_share_R": share(e, "bc", "R"), "bc_share_F": share(e, "bc", "F"),
           "ab_acc_R": ab_r["correct"] / max(1, ab_r["correct"] + ab_r["wrong"])}
    out["routing"] = out["bc_share_R"] - out["bc_share_F"]
    return {k: round(v, 4) for k, v in out.items()}


def pilot_verdicts(f: dict) -> dict:
    """The pilot's gates (research/results/PREDICTIONS.md addendum 3) on pilot_figures (or their mean over seeds)."""
    n = next(k for k in f if k.endswith("_fall"))
    return {"pass@1_rise>=0.2": f["pass@1_rise"] >= 0.2, f"{n}>=0.1": f[n] >= 0.1,
            "no_routing(|bc_R-bc_F|<=0.05)": abs(f["routing"]) <= 0.05, "ab_acc_R<=0.1": f["ab_acc_R"] <= 0.1}


def verdicts(g: dict, regime: str = "hidden-type") -> dict:
    """Each build gate of issue 18, pass or fail (the GRPO pilot's gates are checked apart); the
    choice shares are held to the regime's own (35 / 10 / 55 % in every typed regime)."""
    t1, t0 = g["forced_T1"], g["forced_T0.05"]
    valid = [(p, t) for p in VALID for t in VALID[p]]
    invalid = [(p, t) for p in VALID for t in TYPES if t not in VALID[p]]
    targets = dict(zip(REGIMES[regime]["paths"], REGIMES[regime]["shares"]))
    c = g["choice"]
    pa = g["base_pass"]["all"]
    return {
        "valid_T1>=0.7": all(t1[p][t] >= 0.7 for p, t in valid),
        "valid_T0.05>=0.9": all(t0[p][t] >= 0.9 for p, t in valid),
        "invalid<=0.05": all(t1[p][t] <= 0.05 and t0[p][t] <= 0.05 for p, t in invalid),
        "shares_within_3pts": all(abs(c[t][p] - targets[p]) <= 0.03 for t in TYPES for p in targets),
        "rare_share_R_vs_F<=0.02": abs(c["R"]["bc"] - c["F"]["bc"]) <= 0.02,
        "base_pass@1_0.35-0.45": 0.35 <= pa["pass@1"] <= 0.45,
        "base_pass@32>=0.95": pa.get("pass@32", 0.0) >= 0.95,
        "base_pass@32_R>=0.9": g["base_pass"]["R"].get("pass@32", 0.0) >= 0.9,
        "linear_probe_auc<=0.65": max(g["probes"]["linear"]) <= 0.65,
    }


def pilot_report(results_json: str | Path) -> dict:
    """The GRPO pilot's gates from a compare.py results.json and its run folders (eval.jsonl holds
    the evaluations at every --eval-every step): per seed and step, and the mean over seeds."""
    res = json.loads(Path(results_json).read_text())
    base = res["methods"]["base"]["runs"][0]["final"]
    out = {"base": {k: base["pass@k"][k] for k in ("1", str(base["n"]))}, "by_step": {}}
    for r in res["methods"]["grpo"]["runs"]:
        for line in (Path(r["out"]) / "eval.jsonl").read_text().splitlines():
            e = json.loads(line)
            if e.get("step", 0) > 0 and "by_type" in e:
                out["by_step"].setdefault(e["step"], {})[r["seed"]] = pilot_figures(e, base)
    for step, seeds in out["by_step"].items():
        mean = {k: round(sum(f[k] for f in seeds.values()) / len(seeds), 4) for k in next(iter(seeds.values()))}
        seeds["mean"] = mean
        seeds["gates"] = pilot_verdicts(mean)
        seeds["gates_each_seed"] = {s: pilot_verdicts(f) for s, f in seeds.items() if isinstance(s, int)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m research.gates", description="Measure a hidden-type build's gates and "
                                 "probes. Writes them to a fresh runs/gates-<toy>-<time>/gates.json; only "
                                 "--write-build-json stores them in the build's BUILD.json (the shipped toys/<toy>/ "
                                 "unless --model). --pilot writes nothing.")
    ap.add_argument("--toy", default="hidden-type", choices=[k for k, r in REGIMES.items() if r.get("typed")])
    ap.add_argument("--model", metavar="FOLDER", help="the build to measure (default the shipped toys/<toy>/), e.g. a "
                                                      "rebuild in runs/build-<toy>-<time>/")
    ap.add_argument("--write-build-json", action="store_true", help="store the gates in the build's BUILD.json "
                                                                    "(its \"gates\", replaced), not in runs/")
    ap.add_argument("--pilot", metavar="RESULTS_JSON", help="instead: the GRPO pilot's gates from a compare.py "
                                                            "results.json, printed")
    a = ap.parse_args(argv)
    if a.pilot:
        print(json.dumps(pilot_report(a.pilot), indent=1))
        return 0
    folder = Path(a.model) if a.model else toy_dir(a.toy)
    build_json = folder / "BUILD.json"
    if a.write_build_json:  # checked before the minutes of measuring
        try:
            build = json.loads(build_json.read_text())
            if not isinstance(build, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            print(f"gates.py: error: --write-build-json: {build_json}: cannot read it ({e})", file=sys.stderr)
            return 2
    try:
        res = gates(a.toy, folder=folder)
    except ModelLoadError as e:
        print(f"gates.py: error: {e}", file=sys.stderr)
        return 2
    if a.write_build_json:
        build["gates"] = res
        tmp = build_json.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(build, indent=2) + "\n")
        tmp.replace(build_json)
        print(f"written to {build_json} (its \"gates\")")
    else:
        path = fresh_folder(f"gates-{a.toy}") / "gates.json"
        path.write_text(json.dumps(res, indent=2) + "\n")
        print(f"written to {path} ({build_json} unchanged: --write-build-json stores them there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
