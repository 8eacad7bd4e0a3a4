r"""
The builder of the built-in toys: a word-level tokenizer and a tiny Qwen2 pretrained from scratch on
a regime's task (toys/tasks.py), saved as a Hugging Face folder (toys/<regime>/) with BUILD.json.

    python -m toys.build [THREADS]                   # rebuilds toys/original/ from seed 0 into runs/build-original-<time>/
    python -m toys.build --toy equal-paths           # likewise for another regime (the typed ones: two stages)
    python -m toys.build --out toys/original --overwrite   # ... replacing the shipped model (THREADS: torch threads, default 1)

Choices, stated once:
- Tokenizer: a word-level `tokenizers` model trained on the task's text; every digit and symbol is
  its own token ("\boxed{" is one token), so tokenising a prompt and a completion apart gives the
  same ids as tokenising them together. 23 tokens; EOS = "<|endoftext|>", pad = a separate
  "<|pad|>" (masks never come from ids anyway). Completions are at most 39 tokens with EOS.
- Pretraining: plain next-token loss on prompt and completion (so prompt perplexity, ARM's c(q),
  is that of a model that has seen such prompts), AdamW, warmup + cosine. We evaluate pass@1 on
  held-out prompts at temperature 1 every `eval_every` steps and stop at the first check where it
  reaches `stop_at`: the shipped model is deliberately half-trained, with room for RL.
- Model: Qwen2 layout (model.Transformer), hidden 96, 3 layers, 4 heads, 2 kv heads, MLP 256,
  tied embeddings: 0.31M parameters. A 0.79M model (hidden 128, 4 layers, MLP 384) learnt more
  slowly per step (pass@1 0.22 after 2000 steps, twice the time), so we ship the smaller one.
- Threads: one by default. The weights are bit-reproducible from the seed at a fixed thread
  count; on our shared 2-core machine, one thread was also much faster than two.

The shipped toys/original/ (its BUILD.json has every figure; measured on a 2-core machine shared with other
jobs, 1 thread): 1500 steps of 32 documents,
129 s wall (124 CPU s). On 128 held-out prompts x 16 samples at temperature 1: pass@1 0.379,
pass@8 0.907; samples by style left 51.8 %, right 22.7 %, tens 15.1 %, direct 6.2 %, None 4.3 %,
with accuracy per style 0.55 / 0.25 / 0.21 / 0.06 (None 0.09). A rebuild gave identical weights.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from arm import pass_at_k
from checkpoint import make_fresh_folder
from hf import load_model, load_tokenizer, save_model
from model import ModelConfig, Transformer
from sampler import generate
from toys.hidden_type import TYPES, VALID
from toys.tasks import REGIMES, make_problems, pretraining_text, problems_by_type, regime_of, solution_path, toy_dir
from verifier import verify

EOS, PAD, UNK = "<|endoftext|>", "<|pad|>", "<|unk|>"
MAX_NEW_TOKENS = 48              # longest completion (tens style, 3 numbers) is 39 tokens incl. EOS


@dataclass
class BuildSettings:
    """The settings of one build (build_toy's keyword settings); the defaults build toys/original/."""
    hidden_size: int = 96                # the model: Qwen2 layout, tied embeddings
    intermediate_size: int = 256
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    max_steps: int = 2000                # pretraining steps at most; the cosine reaches 0 here
    batch_size: int = 32                 # fresh documents per step
    lr: float = 3e-3                     # AdamW peak learning rate
    warmup: int = 100                    # steps of linear warmup
    eval_every: int = 100                # steps between checks
    fine_every: int | None = None        # steps between checks once pass@stop_k >= stop_at / 2
    eval_prompts: int = 64               # held-out prompts per check
    eval_samples: int = 4                # samples per prompt at a check (T = 1)
    stop_k: int = 1                      # stop once pass@stop_k >= stop_at ...
    stop_at: float = 0.4
    stop_spread: float = 1.0             # ... and (equal-paths) the paths' accuracies are this close
    check_path_samples: int = 8          # samples per prompt per forced path at a check
    final_prompts: int = 128             # held-out prompts for BUILD.json's figures, unseen by the checks
    final_samples: int = 16              # samples per prompt for those figures (T = 1)
    threads: int | None = None           # torch threads; None leaves torch's choice
    init_from: str | Path | None = None  # a second stage goes on from this saved build
    shares: tuple[float, ...] | None = None  # the choice token's soft label; None = the regime's shares


BUILDS = {  # the settings of the shipped builds (what differs from BuildSettings' defaults)
    "original": dict(),
    # hidden-type: what each path does per type can come in a late jump whose step depends on the
    # seed, so stage 1 trains at a flat rate (cosine over a far cap) until the forced-path checks show
    # it learnt, with the choice labelled 45 / 10 / 45; stage 2 (STAGE2) cools down for 1000 steps with
    # the label at the regime's shares, 35 / 10 / 55 (in attempt 2, 40 / 10 / 50 left base pass@1 at
    # 0.459, above its gate)
    "hidden-type": dict(eval_every=500, eval_prompts=64, eval_samples=4, stop_at=0.0, check_path_samples=4,
                        max_steps=60000, warmup=200, final_prompts=128, final_samples=32, shares=(0.45, 0.10, 0.45)),
    "shown-type": dict(eval_every=250, eval_prompts=64, eval_samples=4, stop_at=0.0, check_path_samples=4,
                       max_steps=60000, warmup=200, final_prompts=128, final_samples=32, shares=(0.45, 0.10, 0.45)),
    "equal-paths": dict(eval_every=250, fine_every=50, eval_prompts=64, eval_samples=32, stop_k=32, stop_at=0.7,
                        stop_spread=0.04, max_steps=6000, final_prompts=128, final_samples=32),
}
BUILDS["hidden-type-r20"] = BUILDS["hidden-type"]  # the same recipe; only the task's bc_digits differ


STAGE2 = {g: dict(max_steps=1000, lr=5e-4, warmup=50, eval_every=1000, eval_prompts=64, eval_samples=4, stop_at=0.0,
                  check_path_samples=4, final_prompts=128, final_samples=32)
          for g in ("hidden-type", "shown-type", "hidden-type-r20")}


def train_tokenizer(texts: list[str]) -> Tokenizer:
    """A word-level tokenizer trained on the task's text: each digit and symbol is one token,
    '\\boxed{' and words are one token each; ids 0, 1, 2 = EOS, pad, unk."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|[A-Za-z]+|\d|[^A-Za-z\d]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # decode = concatenate the tokens, nothing inserted
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=64, special_tokens=[EOS, PAD, UNK]))
    return tok


# -----------------------------------------------------------------------------
# evaluation (held-out prompts, sampled with sampler.generate, graded with verifier.verify)


@torch.no_grad()
def _sample_and_grade(model, tokenizer: Tokenizer, problems: list[dict], n_samples: int, gen: torch.Generator,
                      temperature: float, chunk: int) -> tuple[list[int], dict, dict, int]:
    """n_samples completions per problem, chunk problems per generate call -> correct samples per
    problem, samples per style, correct samples per style, samples that ended with EOS."""
    eos = [tokenizer.token_to_id(EOS)]
    n_correct, styles, style_ok, finished = [], {}, {}, 0
    for i in range(0, len(problems), chunk):
        part = problems[i:i + chunk]
        out = generate(model, [tokenizer.encode(p["prompt"]).ids for p in part], MAX_NEW_TOKENS,
                       temperature=temperature, eos_token_ids=eos, generator=gen, samples_per_prompt=n_samples)
        finished += int(out.finished.sum())
        lengths, ended = out.lengths.tolist(), out.finished.tolist()
        for j, p in enumerate(part):
            c = 0
            for row in range(j * n_samples, (j + 1) * n_samples):
                n_text = lengths[row] - int(ended[row])  # drop the EOS before decoding
                text = tokenizer.decode(out.tokens[row, :n_text].tolist())
                ok = verify(text, p["answer"])
                style = solution_path(text)
                c += ok
                styles[style] = styles.get(style, 0) + 1
                style_ok[style] = style_ok.get(style, 0) + ok
            n_correct.append(c)
    return n_correct, styles, style_ok, finished


def evaluate(model, tokenizer: Tokenizer, problems: list[dict], n_samples: int, *, temperature: float = 1.0,
             seed: int = 0, ks: tuple[int, ...] = (1, 8), chunk: int = 64) -> dict:
    """Sample n_samples completions per problem; returns pass@k (arm.pass_at_k, k <= n_samples), the
    share of samples per style (None = unrecognised), each style's accuracy, and the share of
    samples that ended with EOS."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    n_correct, styles, style_ok, finished = _sample_and_grade(model, tokenizer, problems, n_samples, gen, temperature, chunk)
    model.train(was_training)
    total = n_samples * len(problems)
    return {
        **{f"pass@{k}": sum(pass_at_k(n_samples, c, k) for c in n_correct) / len(problems) for k in ks if k <= n_samples},
        "style_freq": {str(s): styles[s] / total for s in sorted(styles, key=str)},
        "style_acc": {str(s): style_ok[s] / styles[s] for s in sorted(styles, key=str)},
        "finished": finished / total,
    }


# -----------------------------------------------------------------------------
# pretraining


def _batch(rng: random.Random, tokenizer: Tokenizer, batch_size: int, eos_id: int, pad_id: int,
           regime: str = "original", practice: list[float] | None = None):
    """batch_size fresh documents + EOS, right-padded: ids (B, T), loss mask (B, T-1) from lengths, and
    choice (B,): the position in the mask (= in the logits) that predicts the path's name under
    equal-paths, -1 elsewhere."""
    texts = [pretraining_text(rng, regime, practice) for _ in range(batch_size)]
    seqs = [tokenizer.encode(t).ids + [eos_id] for t in texts]
    lengths = torch.tensor([len(s) for s in seqs])
    T = int(lengths.max())
    ids = torch.full((batch_size, T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
    mask = torch.arange(1, T)[None, :] < lengths[:, None]  # (B, T-1): target position t+1 is real
    choice = torch.full((batch_size,), -1, dtype=torch.long)
    if regime_of(regime)["tagged"]:  # the name is the first completion token; logits at t - 1 predict it
        choice = torch.tensor([len(tokenizer.encode(t.rsplit("A: ", 1)[0] + "A: ").ids) - 1 for t in texts])
    return ids, mask, choice


def learning_rate(step: int, s: BuildSettings) -> float:
    """Linear warmup over s.warmup steps, then cosine decay to 0 at s.max_steps."""
    return s.lr * min(1.0, step / s.warmup) * 0.5 * (1 + math.cos(math.pi * step / s.max_steps))


def pretraining_loss(model, ids: torch.Tensor, mask: torch.Tensor, choice: torch.Tensor,
                     name_ids: torch.Tensor | None, shares: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, averaged over the target tokens in mask. Under equal-paths (name_ids
    given) the token that names the path is scored instead by a soft-label cross-entropy towards the
    shares, -sum_s share_s log p(name_s | prompt): every path gets the same practice, yet the choice
    learns the regime's shares."""
    logits = model(ids)[:, :-1]  # (B, T-1, V); right padding needs no attention mask (causal)
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                            reduction="none")  # (B * (T-1),)
    if name_ids is None:
        return (nll * mask.reshape(-1)).sum() / mask.sum()
    rows = torch.arange(len(ids))
    mask = mask.clone()
    mask[rows, choice] = False  # the path's name: not its sampled value, but the shares below
    logp_names = logits[rows, choice].log_softmax(-1)[:, name_ids]  # (B, paths)
    choice_nll = -(logp_names * shares).sum(-1)  # (B,)
    return ((nll * mask.reshape(-1)).sum() + choice_nll.sum()) / (mask.sum() + len(ids))


def pretrain_step(model, opt: torch.optim.Optimizer, batch: tuple, lr: float, name_ids: torch.Tensor | None,
                  shares: torch.Tensor) -> float:
    """One optimizer step at learning rate lr on batch = (ids, mask, choice) from _batch; returns the loss."""
    for g in opt.param_groups:
        g["lr"] = lr
    loss = pretraining_loss(model, *batch, name_ids, shares)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()


# -----------------------------------------------------------------------------
# the checks during pretraining and their stopping rule (hidden-type, shown-type: research/gates.py
# uses forced_accuracy too)


def path_accuracy(model, tokenizer: Tokenizer, problems: list[dict], n_samples: int, regime: str, *,
                  seed: int = 0, chunk: int = 64) -> dict[str, list[float]]:
    """equal-paths: how well the model *executes* each path, whatever it would choose. For each path,
    the prompt is followed by the path's name and n_samples completions are sampled at T = 1.
    Returns path -> per-problem accuracy (a list over problems)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)  # one stream through the paths
    out = {}
    for path in regime_of(regime)["paths"]:
        forced = [{**p, "prompt": p["prompt"] + path + "\n"} for p in problems]
        n_correct, *_ = _sample_and_grade(model, tokenizer, forced, n_samples, gen, 1.0, chunk)
        out[path] = [c / n_samples for c in n_correct]
    model.train(was_training)
    return out


def forced_accuracy(model, tokenizer, by_type: dict[str, list[dict]], n_samples: int, *, temperature: float = 1.0,
                    seed: int = 0, paths=("ab", "bc", "guess")) -> dict[str, dict[str, float]]:
    """path -> type -> accuracy with the path forced (its name appended to the prompt)."""
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for path in paths:
        out[path] = {}
        for t in TYPES:
            forced = [{**p, "prompt": p["prompt"] + path + "\n"} for p in by_type[t]]
            n_correct, *_ = _sample_and_grade(model, tokenizer, forced, n_samples, gen, temperature, 64)
            out[path][t] = sum(n_correct) / (n_samples * len(forced))
    model.train(was_training)
    return out


def slips_learnt(acc: dict[str, dict[str, float]], valid_min: float = 0.9, invalid_max: float = 0.05) -> bool:
    """The build's stopping rule: every cell where ab or bc is right >= valid_min, every blind-spot cell
    (ab on R, bc on F) <= invalid_max."""
    return all((acc[p][t] >= valid_min) if t in VALID[p] else (acc[p][t] <= invalid_max) for p in VALID for t in TYPES)


def steer_practice(acc: list[float]) -> list[float]:
    """Relative practice per path for the next documents: more for a path executed below the mean,
    less above it: w_p = clip(1 + 4 (mean - acc_p) / max(mean, 0.02), 0.2, 3)."""
    mean = sum(acc) / len(acc)
    return [min(3.0, max(0.2, 1 + 4 * (mean - a) / max(mean, 0.02))) for a in acc]


def check(model, tokenizer: Tokenizer, regime: str, problems: list[dict], by_type: dict | None,
          practice: list[float] | None, s: BuildSettings, seed: int) -> tuple[dict, bool, list[float] | None]:
    """One check: pass@1 and pass@stop_k on problems (eval_samples each, T = 1), plus the
    regime's own measure -> those figures, whether the stopping rule is met, and the practice per path
    for the next documents. The rule: pass@stop_k >= stop_at, and under hidden-type and shown-type the
    forced paths right where they should be and slipping where they should (slips_learnt); under
    equal-paths, every path executed (path_accuracy) within stop_spread of the others, the practice
    steered towards the paths that lag (steer_practice)."""
    r = regime_of(regime)
    ev = evaluate(model, tokenizer, problems, s.eval_samples, seed=seed, ks=tuple(sorted({1, s.stop_k})))
    point = {k: ev[k] for k in ev if k.startswith("pass@")}
    spread, slips_ok = 0.0, True
    if r.get("typed"):
        acc = forced_accuracy(model, tokenizer, by_type, s.check_path_samples, seed=seed, paths=("ab", "bc"))
        slips_ok = slips_learnt(acc)
        point["forced"] = {p: {t: round(a, 3) for t, a in v.items()} for p, v in acc.items()}
    elif r["tagged"]:
        acc = {p: sum(a) / len(a) for p, a in
               path_accuracy(model, tokenizer, problems, s.check_path_samples, regime, seed=seed).items()}
        spread = max(acc.values()) - min(acc.values())
        point.update(path_accuracy={p: round(a, 4) for p, a in acc.items()}, practice=[round(w, 3) for w in practice])
        practice = steer_practice(list(acc.values()))
    return point, point[f"pass@{s.stop_k}"] >= s.stop_at and spread <= s.stop_spread and slips_ok, practice


def _check_line(point: dict, seconds: float) -> str:
    """The log line of one check."""
    passes = " ".join(f"{k} {v:.3f}" for k, v in point.items() if k.startswith("pass@"))
    return (f"step {point['step']:5d} | loss {point['loss']:.4f} | held-out {passes}" +
            (f" | paths {json.dumps(point['path_accuracy'])}" if "path_accuracy" in point else "") +
            (f" | forced {json.dumps(point['forced'])}" if "forced" in point else "") + f" | {seconds:.0f}s")


# -----------------------------------------------------------------------------
# the build


def set_up(regime: str, seed: int, s: BuildSettings) -> tuple[random.Random, Tokenizer, Transformer, torch.optim.Optimizer]:
    """Seed torch and the document stream; train the tokenizer on the task's text and make a fresh model,
    or load both from s.init_from; make the optimizer -> (document stream, tokenizer, model, optimizer)."""
    torch.manual_seed(seed)
    rng = random.Random(f"toy-pretrain-{seed}" if regime == "original" else f"toy-{regime}-pretrain-{seed}")
    if s.init_from is not None:  # a second stage: go on from a saved build (its tokenizer and weights)
        tokenizer, model = load_tokenizer(str(s.init_from)), load_model(str(s.init_from))
    else:
        tokenizer = train_tokenizer([pretraining_text(rng, regime) for _ in range(2000)])
        model = Transformer(ModelConfig(
            model_type="qwen2", vocab_size=tokenizer.get_vocab_size(), hidden_size=s.hidden_size,
            intermediate_size=s.intermediate_size, num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads,
            num_key_value_heads=s.num_kv_heads, max_position_embeddings=128, tie_word_embeddings=True,
            eos_token_id=tokenizer.token_to_id(EOS), pad_token_id=tokenizer.token_to_id(PAD)))
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, betas=(0.9, 0.95), weight_decay=0.1)
    return rng, tokenizer, model, opt


def final_figures(model, tokenizer: Tokenizer, regime: str, seed: int, s: BuildSettings) -> dict:
    """BUILD.json's figures, on prompts the checks never saw (final_prompts x final_samples, T = 1):
    "eval" (pass@k, styles, their accuracy) and, under equal-paths, "path_execution"."""
    r = regime_of(regime)
    final_set = make_problems(s.eval_prompts + s.final_prompts, seed, "heldout", regime)[s.eval_prompts:]
    ks = tuple(k for k in (1, 2, 4, 8, 16, 32) if k <= s.final_samples)
    final = evaluate(model, tokenizer, final_set, s.final_samples, seed=seed + 1, ks=ks)
    figures = {"eval": {"prompts": s.final_prompts, "samples": s.final_samples, "temperature": 1.0, **final}}
    if r["tagged"] and not r.get("typed"):  # hidden-type's own figures: research/gates.py
        acc = path_accuracy(model, tokenizer, final_set, s.final_samples, regime, seed=seed + 2)
        fav, others = r["paths"][0], r["paths"][1:]
        figures["path_execution"] = {
            "samples_per_path": s.final_samples,
            "accuracy": {p: sum(a) / len(a) for p, a in acc.items()},
            # problems the favourite path rarely solves (<= 10 %) but another path often does (>= 30 %)
            "favourite_rarely_another_often": sum(
                1 for i in range(len(final_set)) if acc[fav][i] <= 0.1 and max(acc[o][i] for o in others) >= 0.3),
            "unsolved_by_every_path": sum(1 for i in range(len(final_set)) if max(acc[p][i] for p in acc) == 0),
            "problems": len(final_set),
        }
    return figures


def save_build(out_dir: str | Path, model, tokenizer: Tokenizer, stats: dict, log) -> None:
    """Save the model and tokenizer to out_dir as a Hugging Face folder, stats as its BUILD.json; log
    the final figures."""
    save_model(model, out_dir, tokenizer)
    (Path(out_dir) / "BUILD.json").write_text(json.dumps(stats, indent=2) + "\n")
    passes = " ".join(f"{k} {v:.3f}" for k, v in stats["eval"].items() if k.startswith("pass@"))
    log(f"toy: saved to {out_dir} | {stats['steps']} steps, {stats['build_seconds']:.0f}s | {passes} | "
        f"styles {json.dumps({k: round(v, 3) for k, v in stats['eval']['style_freq'].items()})}")
    if "path_execution" in stats:
        log(f"toy: path execution accuracy {json.dumps({k: round(v, 3) for k, v in stats['path_execution']['accuracy'].items()})}")


def build_toy(out_dir: str | Path | None = None, seed: int = 0, *, regime: str = "original", log=print,
              **settings) -> dict:
    """Train the tokenizer and a tiny Qwen2 from scratch (or go on from settings' init_from), save them
    to out_dir (default: the regime's toys/ folder) with BUILD.json, and return BUILD.json's stats.
    settings: the fields of BuildSettings.

    set_up, then pretrain_step on fresh documents; every eval_every steps (fine_every, once pass@stop_k
    has reached stop_at / 2: learning the three-digit sums is sudden, pass@32 can go from 0.7 to 1.0
    within 250 steps) a check, whose stopping rule ends the pretraining before max_steps; then
    final_figures.
    """
    s, r = BuildSettings(**settings), regime_of(regime)
    if s.threads is not None:
        torch.set_num_threads(s.threads)
    t0, cpu0 = time.time(), time.process_time()
    rng, tokenizer, model, opt = set_up(regime, seed, s)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"toy ({regime}): {n_params / 1e6:.2f}M parameters, vocab {tokenizer.get_vocab_size()}, {torch.get_num_threads()} threads")
    eos_id, pad_id = tokenizer.token_to_id(EOS), tokenizer.token_to_id(PAD)
    name_ids = torch.tensor([tokenizer.token_to_id(p) for p in r["paths"]]) if r["tagged"] else None
    shares = torch.tensor(s.shares or r["shares"])  # the choice token's soft label (tagged regimes)
    checks = make_problems(s.eval_prompts, seed, "heldout", regime)
    typed_checks = problems_by_type(s.eval_prompts // 2, seed + 100, regime) if r.get("typed") else None
    practice = [1.0] * len(r["paths"]) if r["tagged"] else None  # equal-paths: documents per path, relative
    curve, loss_avg, every = [], None, s.eval_every
    for step in range(1, s.max_steps + 1):
        batch = _batch(rng, tokenizer, s.batch_size, eos_id, pad_id, regime, practice)  # (B, T), (B, T-1), (B,)
        loss = pretrain_step(model, opt, batch, learning_rate(step, s), name_ids, shares)
        loss_avg = loss if loss_avg is None else 0.95 * loss_avg + 0.05 * loss
        if step % every == 0 or step == s.max_steps:
            figures, stop, practice = check(model, tokenizer, regime, checks, typed_checks, practice, s, seed)
            curve.append({"step": step, "loss": round(loss_avg, 4), **figures})
            log(_check_line(curve[-1], time.time() - t0))
            if stop:
                break
            if s.fine_every and figures[f"pass@{s.stop_k}"] >= s.stop_at / 2:
                every = s.fine_every
    train_s = time.time() - t0
    stats = {
        "regime": regime, "paths": list(r["paths"]), "pretraining_shares": [round(float(x), 4) for x in shares],
        "numbers": [r["low"], r["high"]],
        **({"stage": 2, "choice_label": [round(float(x), 4) for x in shares],
            "stage1": json.loads((Path(s.init_from) / "BUILD.json").read_text())} if s.init_from else {}),
        "seed": seed, "parameters": n_params, "steps": step, "batch_size": s.batch_size, "lr": s.lr,
        "threads": torch.get_num_threads(), "train_seconds": round(train_s, 1),
        "final_loss": round(loss_avg, 4), "curve": curve, **final_figures(model, tokenizer, regime, seed, s),
    }
    stats["build_seconds"] = round(time.time() - t0, 1)
    stats["build_cpu_seconds"] = round(time.process_time() - cpu0, 1)
    save_build(toy_dir(regime) if out_dir is None else out_dir, model, tokenizer, stats, log)
    return stats


def main(argv: list[str] | None = None) -> Path:
    """python -m toys.build: rebuild a toy from seed 0 into a fresh runs/build-<toy>-<time>/, or into --out;
    a folder that holds files only with --overwrite, and only a build (BUILD.json). Returns the folder."""
    ap = argparse.ArgumentParser(prog="python -m toys.build", description="Rebuild a built-in toy from seed 0. Writes a "
                                 "fresh folder runs/build-<toy>-<time>/ (the model, its tokenizer and BUILD.json); the "
                                 "shipped toys/<toy>/ is replaced only by --out toys/<toy> --overwrite.")
    ap.add_argument("threads", nargs="?", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--toy", default="original", choices=list(REGIMES), help="which regime (default original)")
    ap.add_argument("--out", metavar="FOLDER", help="build into FOLDER instead (refused if it holds files, unless "
                                                    "--overwrite)")
    ap.add_argument("--overwrite", action="store_true", help="--out: replace the build in FOLDER (one that holds a "
                                                             "BUILD.json); --out toys/<toy> --overwrite replaces the "
                                                             "shipped model")
    a = ap.parse_args(argv)
    if a.out:  # checked before the minutes of building
        out = Path(a.out)
        held = sorted(c.name for c in out.iterdir()) if out.is_dir() else []
        if out.exists() and not out.is_dir():
            ap.exit(2, f"build.py: error: --out {out}: is a file, not a folder\n")
        if held and not a.overwrite:
            ap.exit(2, f"build.py: error: --out {out}: already holds files ({', '.join(held[:4])}"
                       f"{', ...' if len(held) > 4 else ''}): add --overwrite to replace that build, or give another --out\n")
        if held and "BUILD.json" not in held:
            ap.exit(2, f"build.py: error: --out {out}: holds files but no build (no BUILD.json); --overwrite only "
                       "replaces a build\n")
    else:  # a fresh folder: two builds started in the same second get two
        out = make_fresh_folder(Path("runs") / f"build-{a.toy}-{time.strftime('%Y%m%d-%H%M%S')}")
        print(f"building into {out}/ (toys/{a.toy}/ unchanged: --out toys/{a.toy} --overwrite replaces the shipped model)")
    if a.toy in STAGE2:  # stage 1 into a scratch folder, stage 2 from it into the output folder
        with tempfile.TemporaryDirectory() as tmp:
            build_toy(tmp, seed=0, regime=a.toy, threads=a.threads, **BUILDS[a.toy])
            build_toy(out, seed=0, regime=a.toy, threads=a.threads, init_from=tmp, **STAGE2[a.toy])
    else:
        build_toy(out, seed=0, regime=a.toy, threads=a.threads, **BUILDS[a.toy])
    return out


if __name__ == "__main__":
    main()
