r"""
The third built-in toy, `hidden-type`: two valid paths that overlap, and a type the model cannot
read where it chooses its path. Built so that GRPO *can* narrow what is solved at large k.

    python toy.py --toy hidden-type       # rebuild toy-hidden-type/ (until the paths are learnt)
    python hidden_type.py                 # measure the gates of the shipped build -> BUILD.json
    python hidden_type.py --toy shown-type   # the same for the control (type written in the prompt)

The task: a made-up operation on three two-digit numbers, "Q: 20#21#11=?\nA: ":

    a#b#c = a + b + c, plus 10 if a+b ends in 0-4 or b+c ends in 3, 5 or 8   (one bonus of 10 at most)

The completion's first token names the path:

    ab     (a+b), its bonus, then +c   ab\n20+21=41\n41+10=51\n51+11=62\n\boxed{62}   the favourite, 35 %
    bc     (b+c), its bonus, then +a   bc\n21+11=32\n32+20=52\n\boxed{52}            the rare path, 10 %
    guess  no work                     guess\n\boxed{60}                            a#b#c rounded to tens, 55 %

Each path is an unconditional procedure with a blind spot, on purpose: `ab` writes a+b and adds the
bonus that a+b decides (its line "41+10=51"), but never the one b+c decides; `bc` writes b+c, adds
its bonus, never the one a+b decides. The types:

    type   when                                         share of uniform problems   right paths
    F      a+b ends in 0-4, b+c not in 3, 5, 8          35 %                        ab only
    R      b+c ends in 3, 5 or 8, a+b in 5-9            15 %                        bc only
    B      both conditions or neither                   50 %                        ab and bc

So the favourite is right on 85 % of the problems, the rare path on 65 %, and 15 % are solved only by
the rare path: the shape of Yue et al.'s finding on real models. A guess is right only when a#b#c is
a multiple of ten. Repairing `ab` on R would need b+c's last digit at a point where `ab`'s own work
never computes it. The type is partly readable at the last prompt position (a linear probe: AUC
0.83-0.89), but in 300 GRPO steps the policy did not route on it (the pilot). Why built in: with
real arithmetic errors, the favourite of our first toy was also its most reliable path everywhere,
so GRPO's narrowing had nowhere to show.

Attempts before this one (all in results/PREDICTIONS.md, addendum 3). 1 (commit cf0277c): sums, the
type from the parities of a, b, c and a slip in the second line; its slips were never learnt (17,500
steps). 2 (commit 5d9c186): sums, F / R by a+b+c mod 5, and a box 10 too large where a path was not
valid; it passed every build gate, but in the GRPO pilot the policy simply stopped slipping (`ab`'s
accuracy on R 0.002 -> 0.99 in 200 steps): a type-dependent deviation from a procedure the model runs
right elsewhere is one simple rule away from repair. Here the failure is the procedure itself.
3: this operation with two bonuses that could add up (a+b = 1, b+c = 3 mod 5); 4 % of problems had no
right path (base pass@32 0.943). 3b: one bonus at most; every gate passed, the blind spot held and
nothing was routed, but with F and R equally common (16 % each) GRPO's push on the path name averaged
zero and the rare path was never driven out. 4, this one: F more common than R.

Pretraining practises ab, bc and guess equally on every type; the token that names the path is
trained with the same soft label whatever the type: 45 / 10 / 45 % in stage 1, until the paths are
executed right and their blind spots learnt (6,000 steps), then 35 / 10 / 55 % in stage 2 (1,000
steps cooling down), which keeps base pass@1 in its gate (in attempt 2, 45 / 10 / 45 gave 0.458 and
40 / 10 / 50 0.459: the cool-down also sharpens execution). Training documents are uniform problems:
balancing them by type would bias the digits and so give the type away in the prompt text. A weak
favourite and many guesses instead of a noisy second stage: with execution near certain, the
guesses set base pass@1 (about 0.4) and leave GRPO an easy +0.4 to find.

`shown-type` is the control: the same task with the type written in the prompt
("Q: 20#21#11=? type F\nA: "), so that a policy can route each problem to its valid path.

The gates (`gates`, stored in BUILD.json): accuracy with the path forced per path x type at T = 1
and T = 0.05; the choice's probabilities per type (exact, from the logits at the last prompt
position); base pass@k overall and per type; linear and small-MLP probes of F vs R on the hidden
state at the last prompt position, at every layer.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

TYPES = ("F", "R", "B")
VALID = {"ab": ("F", "B"), "bc": ("R", "B")}  # where each path is right
BONUS = 10
AB_DIGITS, BC_DIGITS = {0, 1, 2, 3, 4}, {3, 5, 8}  # the units digits of a+b, resp. b+c, that call for the bonus
SHARES = {"F": 0.35, "R": 0.15, "B": 0.5}  # of uniform problems (tests/test_hidden_type.py counts them)


def _conditions(numbers: tuple[int, ...] | list[int]) -> tuple[bool, bool]:
    """(the condition ab can see, the one bc can see): a+b, resp. b+c, ends in one of its digits."""
    a, b, c = numbers
    return (a + b) % 10 in AB_DIGITS, (b + c) % 10 in BC_DIGITS


def answer(numbers: tuple[int, ...] | list[int]) -> int:
    """a#b#c = a + b + c, + 10 if either condition holds (one bonus at most)."""
    return sum(numbers) + BONUS * any(_conditions(numbers))


def type_of(numbers: tuple[int, ...] | list[int]) -> str:
    """'F' (only ab right), 'R' (only bc right) or 'B' (both); see the table above."""
    sees_ab, sees_bc = _conditions(numbers)
    return "B" if sees_ab == sees_bc else "F" if sees_ab else "R"


def guess_of(total: int) -> int:
    """The guess path's answer: the sum rounded to the nearest ten (halves up)."""
    return (total + 5) // 10 * 10


def solution(numbers: tuple[int, ...] | list[int], path: str) -> str:
    """The pretraining completion (without EOS) of a path: the same procedure on every problem."""
    a, b, c = numbers
    if path == "guess":
        return f"guess\n\\boxed{{{guess_of(answer(numbers))}}}"
    if path not in VALID:
        raise ValueError(f"hidden_type.solution: path must be ab, bc or guess, got {path!r}")
    first, second, last, digits = (a, b, c, AB_DIGITS) if path == "ab" else (b, c, a, BC_DIGITS)
    s1 = first + second
    lines = [path, f"{first}+{second}={s1}"]
    if s1 % 10 in digits:  # the condition this path can see, read off the sum it just wrote
        lines.append(f"{s1}+{BONUS}={s1 + BONUS}")
        s1 += BONUS
    lines.append(f"{s1}+{last}={s1 + last}")
    return "\n".join(lines) + f"\n\\boxed{{{s1 + last}}}"


def format_prompt(numbers: tuple[int, ...] | list[int], shown: bool) -> str:
    """The prompt; the control (shown) writes the type after the question."""
    q = "Q: " + "#".join(str(x) for x in numbers) + "=?"
    return q + (f" type {type_of(numbers)}" if shown else "") + "\nA: "


def problems_by_type(n: int, seed: int, regime: str = "hidden-type") -> dict[str, list[dict]]:
    """n held-out problems of each type (drawn uniformly, then sorted by type; only for measuring)."""
    import toy

    pool = toy.make_problems(12 * n, seed, "heldout", regime)
    out = {t: [p for p in pool if type_of(p["numbers"]) == t][:n] for t in TYPES}
    if min(len(v) for v in out.values()) < n:
        raise ValueError(f"problems_by_type: fewer than {n} of some type among {len(pool)} problems")
    return out


# -----------------------------------------------------------------------------
# measuring a build


def forced_accuracy(model, tokenizer, by_type: dict[str, list[dict]], n_samples: int, *, temperature: float = 1.0,
                    seed: int = 0, paths=("ab", "bc", "guess")) -> dict[str, dict[str, float]]:
    """path -> type -> accuracy with the path forced (its name appended to the prompt)."""
    import toy

    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for path in paths:
        out[path] = {}
        for t in TYPES:
            forced = [{**p, "prompt": p["prompt"] + path + "\n"} for p in by_type[t]]
            n_correct, *_ = toy._sample_and_grade(model, tokenizer, forced, n_samples, gen, temperature, 64)
            out[path][t] = sum(n_correct) / (n_samples * len(forced))
    model.train(was_training)
    return out


def slips_learnt(acc: dict[str, dict[str, float]], valid_min: float = 0.9, invalid_max: float = 0.05) -> bool:
    """The build's stopping rule: every cell where ab or bc is right >= valid_min, every blind-spot cell
    (ab on R, bc on F) <= invalid_max."""
    return all((acc[p][t] >= valid_min) if t in VALID[p] else (acc[p][t] <= invalid_max) for p in VALID for t in TYPES)


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
    y = torch.tensor([1 if type_of(p["numbers"]) == "R" else 0 for p in order])
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
    import toy
    from model import load_model, load_tokenizer

    t0 = time.time()
    torch.set_num_threads(1)
    folder = folder or toy.toy_dir(regime)
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
        ev = toy.evaluate(model, tokenizer, by_type[t], n_samples, seed=seed + 1, ks=(1, 2, 4, 8, 16, 32))
        pk[t] = {k: round(v, 4) for k, v in ev.items() if k.startswith("pass@")}
        pk[t]["style_freq"] = {k: round(v, 4) for k, v in ev["style_freq"].items()}
    uniform = toy.make_problems(3 * n_per_type, seed + 3, "heldout", regime)  # every type, N included
    ev = toy.evaluate(model, tokenizer, uniform, n_samples, seed=seed + 1, ks=(1, 2, 4, 8, 16, 32))
    pk["all"] = {k: round(v, 4) for k, v in ev.items() if k.startswith("pass@")}
    out["base_pass"] = pk
    log(f"base pass@k per type: {json.dumps(pk)}")
    out["probes"] = probes(model, tokenizer, probe_n, seed + 2, regime)
    log(f"probes F vs R, AUC per layer (0 = embeddings): {json.dumps(out['probes'])}")
    out["verdicts"] = verdicts(out)
    out["seconds"] = round(time.time() - t0, 1)
    log(f"gates: {json.dumps(out['verdicts'])}")
    return out


def confidence_table(regime: str = "hidden-type", eval_prompts: int = 128, n: int = 32,
                     folder: str | Path | None = None) -> dict:
    """The base model on the comparison's held-out prompts (train.evaluate, the same call every run's
    final evaluation makes): c(q) over the prompts, and per type x path the samples correct / wrong
    with their mean c(o|q). For the pre-registration (results/PREDICTIONS.md)."""
    import toy
    import train
    from config import make_config
    from data import load_problems
    from model import load_model, load_tokenizer

    torch.set_num_threads(1)
    cfg = make_config({"toy": regime, "eval_prompts": eval_prompts, "eval_n": n})
    folder = str(folder or toy.toy_dir(regime))
    model, tokenizer = load_model(folder), load_tokenizer(folder)
    _, held, path_fn = load_problems(cfg)
    eos = train.chat_eos_ids(model, tokenizer, cfg)
    e = train.evaluate(model, tokenizer, held, cfg, path_fn=path_fn, eos_ids=eos)
    ro = train.rollout(model, tokenizer, held, cfg, torch.Generator().manual_seed(0), eos, G=1)
    c_q, _ = train.compute_confidences(ro, 1, cfg.low_frac)
    return {"c_q_mean": float(c_q.mean()), "c_q_std": float(c_q.std()), "pass@k": e["pass@k"],
            "entropy": e["entropy"], "paths": e["paths"], "by_type": e["by_type"]}


def pilot_figures(e: dict, base: dict) -> dict:
    """One GRPO pilot evaluation (train.evaluate's dict) against the base model's: the pilot's gates."""
    def share(ev, path, t):
        paths = ev["by_type"][t]["paths"]
        n = sum(v["correct"] + v["wrong"] for v in paths.values())
        v = paths.get(path, {"correct": 0, "wrong": 0})
        return (v["correct"] + v["wrong"]) / n
    ab_r = e["by_type"]["R"]["paths"].get("ab", {"correct": 0, "wrong": 0})
    n = str(e["n"])
    out = {"pass@1_rise": e["pass@k"]["1"] - base["pass@k"]["1"], f"pass@{n}_fall": base["pass@k"][n] - e["pass@k"][n],
           "bc_share_R": share(e, "bc", "R"), "bc_share_F": share(e, "bc", "F"),
           "ab_acc_R": ab_r["correct"] / max(1, ab_r["correct"] + ab_r["wrong"])}
    out["routing"] = out["bc_share_R"] - out["bc_share_F"]
    return {k: round(v, 4) for k, v in out.items()}


def pilot_verdicts(f: dict) -> dict:
    """The pilot's gates (results/PREDICTIONS.md addendum 3) on pilot_figures (or their mean over seeds)."""
    n = next(k for k in f if k.endswith("_fall"))
    return {"pass@1_rise>=0.2": f["pass@1_rise"] >= 0.2, f"{n}>=0.1": f[n] >= 0.1,
            "no_routing(|bc_R-bc_F|<=0.05)": abs(f["routing"]) <= 0.05, "ab_acc_R<=0.1": f["ab_acc_R"] <= 0.1}


def verdicts(g: dict) -> dict:
    """Each build gate of issue 18, pass or fail (the GRPO pilot's gates are checked apart)."""
    t1, t0 = g["forced_T1"], g["forced_T0.05"]
    valid = [(p, t) for p in VALID for t in VALID[p]]
    invalid = [(p, t) for p in VALID for t in TYPES if t not in VALID[p]]
    import toy

    targets = dict(zip(toy.REGIMES["hidden-type"]["paths"], toy.REGIMES["hidden-type"]["shares"]))
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


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Measure a hidden-type build's gates and store them in its BUILD.json.")
    ap.add_argument("--toy", default="hidden-type", choices=["hidden-type", "shown-type"])
    ap.add_argument("--pilot", metavar="RESULTS_JSON", help="instead: the GRPO pilot's gates from a compare.py results.json")
    a = ap.parse_args()
    if a.pilot:
        print(json.dumps(pilot_report(a.pilot), indent=1))
        sys.exit(0)
    import toy

    res = gates(a.toy)
    path = toy.toy_dir(a.toy) / "BUILD.json"
    build = json.loads(path.read_text())
    build["gates"] = res
    path.write_text(json.dumps(build, indent=2) + "\n")
    print(f"written to {path}")
    sys.exit(0)
