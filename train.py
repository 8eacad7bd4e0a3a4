"""ARM-weighted GRPO, one readable loop.  `python train.py` trains the built-in toy on a CPU.

    python train.py                                   # toy: eval, train with ARM, eval, before/after table
    python train.py --algo grpo --steps 100           # plain GRPO (= --algo arm --alpha 0)
    python train.py --toy hidden-type                 # another built-in toy (toys/tasks.py has all five)
    python train.py --model Qwen2.5-0.5B-Instruct --data gsm8k_train.jsonl --template qwen-chat --device cuda
    python train.py --resume runs/20260101-120000     # continue from the last checkpoint
    python train.py --config runs/.../config.json --out runs/again   # rerun a run (flags override the file)

Outputs (runs/<timestamp>/ or --out, never a folder holding another run): metrics.jsonl (a line per
step), eval.jsonl (a line per evaluation), config.json, checkpoints/step_N/, policy/ (a Hugging Face folder).
Around the loop: config.py (settings), data.py (problems and prompt templates), checkpoint.py (the run
folder, resume), hf.py (model folders); beneath it: sampler.py -> model.py, logprobs.py, verifier.py, arm.py.

One training step is five stages, each a function below (METHOD.md names the equations):

    1. rollout             G samples for each of P prompts (sampler.generate); pi_old log-probs of
                           every sampled token and, for ARM, the prompt's log-probs from the same
                           prefill pass
    2. compute_rewards     r = 1 if verifier.verify(response, gold) else 0                  [P, G]
    3. compute_confidences c(q) = exp(mean_t log pi(q_t|q_<t))                    (METHOD.md 3) [P]
                           c(o|q) = exp(mean of the ceil(low_frac |o|) lowest log pi) (METHOD.md 2) [P, G]
    4. compute_advantages  A~ = A + alpha (c(q) - c(o|q)) in groups with a correct answer (Eq. ARM)
    5. policy_update       clipped surrogate with A~ (METHOD.md 5), AdamW, then log one line

How this loop departs from textbook GRPO (DeepSeekMath), and which METHOD.md choice it takes:
- Advantages are ARM's A~ with alpha = 1.0 by default (the paper tunes alpha by hand; ours was
  fixed before any sweep); `--algo grpo` sets alpha = 0, which is GRPO bit for bit. The shift goes
  to every response of a group with a correct answer, as the formula is written; our ablations
  (`--shift-rows`, `--shift-center`, `--all-correct`) are stated in arm.arm_advantages.
- A = (r - mean r) / (std r + 1e-6), population std (arm.grpo_advantages; `--adv-scale none`: Dr.GRPO's
  r - mean r); groups whose rewards are all equal get exactly 0 and are counted (`equal_reward_groups`).
- c(q) is inverse prompt perplexity at the sampling temperature (the paper's exact form is not
  public), read off the sampler's prefill: no extra forward pass. c(o|q) uses the rollout's
  log-probs (pi_old, constants), low_frac = 0.2 (`--low-frac`; 1.0 = plain length-normalised).
- Loss (arm.policy_loss): token-mean over the mini-batch (DAPO), clip eps_low = 0.2, eps_high = 0.28,
  no entropy bonus, no KL unless `--kl-coef` > 0 (k3, to a frozen copy of the initial model).
- One policy update per rollout by default: the ratio is 1 and the clip never fires, so the loss's
  *value* is ~0 (minus the mean advantage) while its gradient is not: watch grad_norm, adv_abs_mean
  and zero_adv_frac. AdamW, global-norm clipping at 1.0, linear warm-up then a constant rate.
- Rewards are binary (verifier.verify), no format or length reward. Responses cut at
  --max-new-tokens keep their reward (almost always 0: no answer) and are counted (`truncated`).
- Training log-probs are recomputed at the sampling temperature from the full distribution (before
  top-p), exactly as sampled (logprobs.py); masks come from lengths, never token ids.
- Evaluation (`evaluate`) samples at the training temperature with its own seeded generator: the
  same held-out prompts and random stream for every run, and the training RNG never moves.
"""
from __future__ import annotations

import dataclasses
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import arm
import verifier
from checkpoint import (CheckpointError, append_jsonl, choose_run_folder, ctrl_c_finishes_the_step, find_checkpoint,
                        restore, resume_point, save_checkpoint, start_run_folder, write_jsonl)
from config import Config, ConfigError, autocast, named_by_source, parse_command_line, resolve_device
from data import DataError, chat_eos_ids, check_prompts_fit, encode_prompts, load_problems, take_batch
from hf import ModelLoadError, load_model, load_tokenizer, save_model
from logprobs import response_logprobs
from sampler import Generation, generate, left_pad
from toys.tasks import toy_dir

# ----------------------------------------------------------------------------------------------
# the five stages


@dataclass
class Rollout:
    """One rollout batch: P prompts x G responses, rows prompt-major (row = p * G + g).

    The columns of one row of input_ids, for T0 = 4 (the longest prompt has 4 tokens; this one, "a b c",
    is left-padded) and a response "x y EOS" in a batch whose longest response has N = 4 tokens:

        column       0    1  2  3 | 4  5  6    7          (T0 + N = 8 columns)
        input_ids   pad   a  b  c | x  y  EOS  pad        prompt [0, T0), response [T0, T0 + N)
        attn_mask    0    1  1  1 | 1  1  1    0          from the lengths, never from token ids
        response t                | 0  1  2    3          response token t sits at column T0 + t

    The logits at column j predict the token at column j + 1, so response token t is predicted at
    column T0 - 1 + t: the first response token by the last prompt column (3 here); that is where
    logprobs.response_logprobs starts reading. gen.tokens / gen.logprobs / gen.mask are the response
    part alone, (B, N), column t = response token t."""
    problems: list[dict]  # P problems (prompt text, gold answer)
    prompt_ids: list[list[int]]  # P tokenised prompts
    gen: Generation  # tokens/logprobs/mask [B, N], lengths/finished [B], prompt log-probs [P, T0-1]
    texts: list[str]  # B decoded responses
    input_ids: torch.Tensor  # (B, T0 + N) left-padded prompt then response: what the policy re-reads
    attn_mask: torch.Tensor  # (B, T0 + N) from lengths
    T0: int  # padded prompt length: response token t sits at column T0 + t


def rollout(model, tokenizer, problems: list[dict], cfg: Config, generator: torch.Generator,
            eos_ids: list[int], *, G: int | None = None, prompt_logprobs: bool = True) -> Rollout:
    """Stage 1: sample G responses per prompt; keep pi_old log-probs (and the prompt's, from the prefill)."""
    G = G or cfg.group_size
    device = next(model.parameters()).device
    prompt_ids = encode_prompts(tokenizer, [p["prompt"] for p in problems], cfg.template)
    with autocast(cfg, device):
        gen = generate(model, prompt_ids, cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                       eos_token_ids=eos_ids, generator=generator, samples_per_prompt=G,
                       return_prompt_logprobs=prompt_logprobs, cuda_graph=cfg.cuda_graph and device.type == "cuda")
    lengths = gen.lengths.tolist()
    # special tokens (EOS, chat markers) are dropped: they are never answer text
    texts = tokenizer.decode_batch([row[:n] for row, n in zip(gen.tokens.tolist(), lengths)], skip_special_tokens=True)
    pids, pmask = left_pad(prompt_ids, device)  # (P, T0), the mask from lengths
    input_ids = torch.cat([pids.repeat_interleave(G, 0), gen.tokens], 1)  # (B, T0 + N)
    attn_mask = torch.cat([pmask.repeat_interleave(G, 0), gen.mask], 1)  # (B, T0 + N)
    return Rollout(problems, prompt_ids, gen, texts, input_ids, attn_mask, pids.shape[1])


def compute_rewards(texts: list[str], answers: list[str], G: int) -> torch.Tensor:
    """Stage 2: r[p, g] = 1 if response p*G+g verifies against gold answers[p], else 0.  (P, G) float."""
    r = [float(verifier.verify(t, answers[i // G])) for i, t in enumerate(texts)]
    return torch.tensor(r, dtype=torch.float32).view(len(answers), G)


def compute_confidences(ro: Rollout, G: int, low_frac: float) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Stage 3: c(q) [P] (None if the rollout has no prompt log-probs) and c(o|q) [P, G], both in (0, 1].
    METHOD.md definitions 3 and 2; inputs are the rollout's log-probs (no gradient)."""
    g = ro.gen
    c_o = arm.answer_confidence(g.logprobs, g.mask, low_frac=low_frac).view(-1, G)
    c_q = arm.prompt_confidence(g.prompt_logprobs, g.prompt_mask) if g.prompt_logprobs is not None else None
    return c_q, c_o


def compute_advantages(rewards: torch.Tensor, c_q: torch.Tensor | None, c_o: torch.Tensor, cfg: Config, *,
                       seq_logprob: torch.Tensor | None = None) -> torch.Tensor:
    """Stage 4: Eq. ARM, A~ = A + alpha (c(q) - c(o|q)) where a group has a correct answer; (P, G).
    alpha = 0 (--algo grpo) is exactly arm.grpo_advantages. --algo unlikely (the baseline) needs
    seq_logprob (P, G), each response's mean token log-prob under the rollout policy."""
    if cfg.algo == "unlikely":
        return arm.unlikeliness_advantages(rewards, seq_logprob.to(rewards.device), beta=cfg.rank_penalty,
                                           scale=cfg.adv_scale)
    if cfg.alpha == 0:
        return arm.grpo_advantages(rewards, scale=cfg.adv_scale)
    return arm.arm_advantages(rewards, c_q.to(rewards.device), c_o.to(rewards.device), alpha=cfg.alpha,
                              scale=cfg.adv_scale, all_correct=cfg.all_correct,
                              shift_rows=cfg.shift_rows, shift_center=cfg.shift_center)


def sampled_logprobs(model, ro: Rollout, rows, n: int, cfg: Config, *, entropy: bool = False,
                     logprobs: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(log pi (b, n), mean entropy or None) of the first n response tokens of `rows` (a tensor or range),
    re-read by `model` at the sampling temperature, as sampler.generate computed pi_old (logprobs.py)."""
    with autocast(cfg, ro.input_ids.device):
        return response_logprobs(model, ro.input_ids[rows, : ro.T0 + n], ro.attn_mask[rows, : ro.T0 + n],
                                 ro.gen.tokens[rows, :n], ro.gen.mask[rows, :n], ro.T0, cfg.temperature,
                                 chunked=cfg.chunk_logprobs, grad_checkpoint=cfg.grad_checkpoint,
                                 entropy=entropy, logprobs=logprobs)


class NonFiniteError(RuntimeError):
    """A NaN/inf loss or gradient: the run stops, the last good checkpoint stays."""


def micro_batches(gen: Generation, rows, size: int):
    """`rows` in pieces of <= `size` rows, each cut to its longest response: yields (rows, n, mask (b, n))."""
    for s in range(0, len(rows), size):
        mb = rows[s: s + size]
        n = int(gen.lengths[mb].max())
        yield mb, n, gen.mask[mb, :n]


def policy_update(model, ref_model, optimizer, ro: Rollout, adv: torch.Tensor, cfg: Config, step: int) -> dict:
    """Stage 5: the clipped surrogate with A~, in three nested loops. Returns averaged loss statistics.

        for each epoch (--epochs; 1 by default)                  a pass over all B rows of the rollout
          for each mini-batch (--mini-batches; 1 by default)     B / mini_batches rows: ONE optimizer step
            for each micro-batch (--micro-batch rows at most)    one forward + backward; gradients add up

    With the defaults there is one epoch and one mini-batch: a single optimizer step on the whole
    rollout, split into micro-batches only to bound memory. The weight w of a micro-batch's loss makes
    the summed gradients equal the gradient of the mini-batch's loss computed in one piece:
      token-mean: the mini-batch loss is sum_t l_t / (tokens in the mini-batch); a micro-batch's loss is
                  sum_t l_t / (its own tokens), so w = its tokens / the mini-batch's tokens;
      seq-mean-token-mean and constant: a mean over rows, so w = its rows / the mini-batch's rows."""
    device, g = ro.input_ids.device, ro.gen
    B = g.tokens.shape[0]
    adv_rows = adv.reshape(-1).to(device)  # (B,) A~ of each response, broadcast to its tokens
    mb_rows = B // cfg.mini_batches
    sums: dict[str, float] = {}
    grad_norms, n_tok_seen, entropy_num = [], 0, 0.0
    model.train()
    for epoch in range(cfg.epochs):
        # a fresh row order per epoch, from (seed, step, epoch): nothing to checkpoint
        perm = torch.randperm(B, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 101 + epoch))
        perm = perm.to(device) if cfg.mini_batches > 1 else torch.arange(B, device=device)
        for m in range(cfg.mini_batches):  # one optimizer step each
            rows = perm[m * mb_rows:(m + 1) * mb_rows]
            mb_tokens = int(g.lengths[rows].sum())
            optimizer.zero_grad(set_to_none=True)
            for mb, n, mask in micro_batches(g, rows, cfg.micro_batch):  # one forward + backward each
                # log pi (b, n) with gradient; the entropy of the policy that sampled (first pass, before
                # this step's updates), without
                logp, ent = sampled_logprobs(model, ro, mb, n, cfg, entropy=epoch == 0)
                ref_logp = None
                if ref_model is not None:
                    with torch.no_grad():
                        ref_logp = sampled_logprobs(ref_model, ro, mb, n, cfg)[0]
                loss, stats = arm.policy_loss(logp, g.logprobs[mb, :n], adv_rows[mb], mask,
                                              eps_low=cfg.eps_low, eps_high=cfg.eps_high, agg=cfg.loss_agg,
                                              ref_logprobs=ref_logp, kl_coef=cfg.kl_coef, max_len=cfg.max_new_tokens)
                tok = int(mask.sum())
                w = tok / mb_tokens if cfg.loss_agg == "token-mean" else len(mb) / mb_rows  # see docstring
                if not torch.isfinite(loss):  # note: a CPU-GPU sync point per micro-batch
                    raise NonFiniteError(f"step {step}: the loss is {loss.item()} (epoch {epoch}, mini-batch {m})")
                (loss * w).backward()
                for k, v in {"loss": loss.item(), **stats}.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * tok
                n_tok_seen += tok
                if epoch == 0:
                    entropy_num += float(ent) * tok
            total = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            if not torch.isfinite(total):
                raise NonFiniteError(f"step {step}: the gradient norm is {total.item()} (epoch {epoch}, mini-batch {m})")
            grad_norms.append(float(total))
            optimizer.step()
    out = {k: v / max(n_tok_seen, 1) for k, v in sums.items()}
    out["grad_norm"] = sum(grad_norms) / len(grad_norms)
    out["entropy"] = entropy_num / max(int(g.lengths.sum()), 1)
    return out


def step_stats(ro: Rollout, rewards: torch.Tensor, c_q, c_o: torch.Tensor, adv: torch.Tensor, cfg: Config) -> dict:
    """Everything about a rollout worth a line in metrics.jsonl (before the update)."""
    g = ro.gen
    lengths = g.lengths.float().cpu()
    correct = rewards > 0.5  # (P, G)
    shift = adv - arm.grpo_advantages(rewards, scale=cfg.adv_scale)  # ARM's alpha (c(q) - c(o|q)) where applied
    adv_tok = adv.reshape(-1).abs()
    equal = (rewards == rewards[:, :1]).all(-1)
    spreads = [float(c_o[p][correct[p]].std(unbiased=False)) for p in range(len(rewards)) if correct[p].sum() >= 2]
    return {
        "reward": float(rewards.mean()),
        "accuracy": float(correct.float().mean()),  # = reward for a binary verifier
        "response_len": float(lengths.mean()),
        "truncated": int((~g.finished).sum()),
        "empty": sum(1 for t in ro.texts if not t.strip()),
        "equal_reward_groups": int(equal.sum()),
        "all_correct_groups": int(correct.all(-1).sum()),
        "all_wrong_groups": int((~correct).all(-1).sum()),
        "adv_abs_mean": float(adv.abs().mean()),
        "zero_adv_frac": float(((adv_tok == 0).float() * lengths).sum() / lengths.sum()),  # per token
        "arm_shift_mean": float(shift.mean()),
        "arm_shift_abs_mean": float(shift.abs().mean()),
        "conf_q_mean": float(c_q.mean()) if c_q is not None else None,
        "conf_o_mean": float(c_o.mean()),
        "conf_o_std": float(c_o.std(unbiased=False)),
        "conf_o_std_correct": sum(spreads) / len(spreads) if spreads else None,  # within groups, correct rows
    }


def train_step(model, ref_model, optimizer, tokenizer, problems: list[dict], cfg: Config,
               generator: torch.Generator, eos_ids: list[int], step: int) -> dict:
    """rollout -> rewards -> confidences -> advantages -> update; returns the step's metrics
    with the time of each stage (t_rollout, t_reward, t_conf, t_update, in seconds)."""
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    t0 = time.perf_counter()
    model.eval()
    ro = rollout(model, tokenizer, problems, cfg, generator, eos_ids, prompt_logprobs=cfg.alpha != 0)
    sync()
    t1 = time.perf_counter()
    rewards = compute_rewards(ro.texts, [p["answer"] for p in problems], cfg.group_size)
    t2 = time.perf_counter()
    c_q, c_o = compute_confidences(ro, cfg.group_size, cfg.low_frac)  # c(o|q) is logged for GRPO too
    c_q, c_o = (c_q.cpu() if c_q is not None else None), c_o.cpu()
    seq_lp = (arm.mean_logprob(ro.gen.logprobs, ro.gen.mask).view(-1, cfg.group_size).cpu()
              if cfg.algo == "unlikely" else None)  # the baseline ranks a group's responses by their mean log-prob
    adv = compute_advantages(rewards, c_q, c_o, cfg, seq_logprob=seq_lp)
    t3 = time.perf_counter()
    upd = policy_update(model, ref_model, optimizer, ro, adv, cfg, step)
    sync()
    t4 = time.perf_counter()
    return {**step_stats(ro, rewards, c_q, c_o, adv, cfg), **upd,
            "t_rollout": t1 - t0, "t_reward": t2 - t1, "t_conf": t3 - t2, "t_update": t4 - t3}


# ----------------------------------------------------------------------------------------------
# evaluation: pass@k, entropy, distinct correct solutions


def path_table(samples: list[tuple[str, bool, float]]) -> dict:
    """(path, correct, c(o|q)) of each sample -> path -> samples correct / wrong and the mean c(o|q) of each."""
    t = {}  # path -> [n correct, n wrong, sum c(o|q) correct, sum c(o|q) wrong]
    for path, ok, conf in samples:
        s = t.setdefault(path, [0, 0, 0.0, 0.0])
        s[0 if ok else 1] += 1
        s[2 if ok else 3] += conf
    return {k: {"correct": s[0], "wrong": s[1], "conf_correct": s[2] / s[0] if s[0] else None,
                "conf_wrong": s[3] / s[1] if s[1] else None} for k, s in sorted(t.items())}


@torch.no_grad()
def evaluate(model, tokenizer, problems: list[dict], cfg: Config, *, n: int | None = None, seed: int | None = None,
             path_fn=None, eos_ids: list[int] | None = None, desc: str = "eval") -> dict:
    """n samples per held-out problem (at the training temperature/top-p) -> pass@k (unbiased,
    arm.pass_at_k) for k = 1, 2, 4, ..., n; the policy's mean token entropy over the sampled tokens;
    distinct correct solutions per problem (path_fn); std of c(o|q) over correct samples (mean over
    problems with >= 2); mean length; on a toy, per solution path (and per problem type): samples
    correct and wrong, and their mean c(o|q). Its own generator (`seed`) leaves the training RNG alone."""
    n = n or cfg.eval_n
    eos_ids = eos_ids if eos_ids is not None else list(getattr(model, "eos_token_ids", []))
    seed = cfg.eval_seed if seed is None else seed
    gen_rng = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    was_training = model.training
    model.eval()
    chunk = max(1, (cfg.prompts_per_step * cfg.group_size) // n)  # rows per generate call ~ the rollout's
    n_correct, distinct, spreads, lengths, ent_num, ent_den, truncated = [], [], [], [], 0.0, 0, 0
    samples = []  # (problem type or None, path, correct, c(o|q)) of every sample: the per-path tables
    bar = tqdm(total=len(problems), desc=desc, unit="prompt", leave=False, dynamic_ncols=True, mininterval=1.0)
    for i in range(0, len(problems), chunk):
        probs = problems[i: i + chunk]
        ro = rollout(model, tokenizer, probs, cfg, gen_rng, eos_ids, G=n, prompt_logprobs=False)
        rewards = compute_rewards(ro.texts, [p["answer"] for p in probs], n)
        c_o = arm.answer_confidence(ro.gen.logprobs, ro.gen.mask, low_frac=cfg.low_frac).view(-1, n).cpu()
        for p, prob in enumerate(probs):
            ok = rewards[p] > 0.5
            n_correct.append(int(ok.sum()))
            named = [path_fn(ro.texts[p * n + j]) for j in range(n)] if path_fn else [None] * n
            distinct.append(len({named[j] for j in range(n) if ok[j]} - {None}))
            if not cfg.data:  # the toy's few named paths (with real data every text is its own "path")
                samples += [(prob.get("type"), str(named[j]), bool(ok[j]), float(c_o[p, j])) for j in range(n)]
            if ok.sum() >= 2:
                spreads.append(float(c_o[p][ok].std(unbiased=False)))
        lengths += ro.gen.lengths.tolist()
        truncated += int((~ro.gen.finished).sum())
        for mb, k, mask in micro_batches(ro.gen, range(ro.gen.tokens.shape[0]), cfg.micro_batch):
            ent = sampled_logprobs(model, ro, mb, k, cfg, entropy=True, logprobs=False)[1]  # needs every logit
            ent_num += float(ent) * int(mask.sum())
            ent_den += int(mask.sum())
        bar.update(len(probs))
    bar.close()
    model.train(was_training)
    P = len(n_correct)
    pass_at = lambda counts: {str(k): sum(arm.pass_at_k(n, c, k) for c in counts) / len(counts) for k in arm.pass_ks(n)}
    types = sorted({t for t, *_ in samples if t is not None})
    return {
        "pass@k": pass_at(n_correct),
        "accuracy": sum(n_correct) / (P * n),
        "entropy": ent_num / max(ent_den, 1),
        "distinct_correct": sum(distinct) / P,
        "conf_o_std_correct": sum(spreads) / len(spreads) if spreads else None,
        "response_len": sum(lengths) / len(lengths),
        "truncated": truncated,
        "prompts": P,
        "n": n,
        "n_correct": n_correct,
        "paths": path_table([s[1:] for s in samples]),  # path_fn's name; "None" = unrecognised
        # per problem type, when the problems have one (hidden-type): pass@k and the per-path table
        **({"by_type": {t: {"prompts": sum(q.get("type") == t for q in problems),
                            "pass@k": pass_at([c for c, q in zip(n_correct, problems) if q.get("type") == t]),
                            "paths": path_table([s[1:] for s in samples if s[0] == t])}
                        for t in types}} if types else {}),
    }


# ----------------------------------------------------------------------------------------------
# the run


def train(cfg: Config, log=print, *, overwrite: bool = False) -> dict:
    """One full run: (eval) -> `steps` training steps -> eval; writes metrics.jsonl, eval.jsonl,
    config.json, checkpoints and the final policy under the output folder (checkpoint.py).
    Returns {"out", "metrics": [per step], "evals": [per evaluation], "before", "after", "interrupted"}."""
    # set-up: everything is read and checked before the run folder is created
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg)
    ckpt, state = resume_point(cfg.resume, log) if cfg.resume else (None, None)
    out = choose_run_folder(cfg.out, ckpt, cfg.resume, overwrite)
    base_model_path = cfg.model or str(toy_dir(cfg.toy))
    tokenizer = load_tokenizer(base_model_path)
    model = load_model(ckpt / "policy" if ckpt else base_model_path, device=device, dtype=torch.float32)
    eos_ids = chat_eos_ids(model, tokenizer, cfg)
    train_set, held, path_fn = load_problems(cfg)
    ref_model = (load_model(base_model_path, device=device, dtype=torch.float32).eval().requires_grad_(False)
                 if cfg.kl_coef > 0 else None)  # the frozen initial policy, only when the KL term is on
    check_prompts_fit(model, tokenizer, train_set[:1] + held[:1], cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    warmup = lambda s: min(1.0, (s + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0  # then constant
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history = {"metrics": [], "evals": []}
    step, data_pos = 0, 0
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2 ** 32)
    torch.manual_seed(cfg.seed)
    if ckpt:  # optimizer, scheduler and every RNG as they were
        step, data_pos, history = restore(ckpt, optimizer, scheduler, generator, state)
        log(f"resuming from {ckpt} at step {step}")
    out = start_run_folder(out, dataclasses.asdict(cfg), history, overwrite, ckpt)  # the folder it created

    def run_eval(at_step: int):
        if held:
            history["evals"].append({"step": at_step, **evaluate(model, tokenizer, held, cfg, path_fn=path_fn,
                                                                  eos_ids=eos_ids, desc=f"eval at step {at_step}")})
            write_jsonl(out / "eval.jsonl", history["evals"])

    def checkpoint(step: int, data_pos: int) -> Path:
        return save_checkpoint(out, step, model, tokenizer, optimizer, scheduler, generator, data_pos, history,
                               dataclasses.asdict(cfg), cfg.keep_checkpoints)

    # the loop: one train_step per batch of prompts, a line in metrics.jsonl each
    if step == 0 and cfg.eval_before and not history["evals"]:
        run_eval(0)
    t_start = time.time()
    last_ckpt = None
    with ctrl_c_finishes_the_step(tqdm.write) as stop:
        try:
            bar = tqdm(total=cfg.steps, initial=step, desc="train", dynamic_ncols=True, mininterval=1.0)  # time left
            while step < cfg.steps and not stop["asked"]:
                batch = take_batch(train_set, data_pos, cfg.prompts_per_step, cfg.seed)
                t0 = time.time()
                m = train_step(model, ref_model, optimizer, tokenizer, batch, cfg, generator, eos_ids, step + 1)
                scheduler.step()
                step += 1
                data_pos += cfg.prompts_per_step
                m = {"step": step, **m, "lr": optimizer.param_groups[0]["lr"], "time_s": time.time() - t0,
                     "elapsed_s": time.time() - t_start}
                history["metrics"].append(m)
                append_jsonl(out / "metrics.jsonl", m)
                bar.update(1)
                bar.set_postfix(reward=f"{m['reward']:.3f}", entropy=f"{m['entropy']:.3f}", gnorm=f"{m['grad_norm']:.2f}")
                if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
                    run_eval(step)
                if cfg.save_every and step % cfg.save_every == 0:
                    last_ckpt = checkpoint(step, data_pos)
            bar.close()
        except NonFiniteError as e:
            good = last_ckpt or (find_checkpoint(out) if list((out / "checkpoints").glob("step_*")) else None)
            raise NonFiniteError(f"{e}; stopped. Last good checkpoint: {good or 'none (nothing saved yet)'}") from None

    # finish: a checkpoint unless the last step saved one; the final evaluation and policy/ unless interrupted
    interrupted = stop["asked"]
    if interrupted or not cfg.save_every or step % cfg.save_every:
        last_ckpt = checkpoint(step, data_pos)
    if interrupted:
        log(f"interrupted at step {step}: checkpoint {last_ckpt}; continue with --resume {out}")
    else:
        if not (history["evals"] and history["evals"][-1]["step"] == step):
            run_eval(step)
        save_model(model, out / "policy", tokenizer)
    evals = history["evals"]
    return {"out": str(out), "metrics": history["metrics"], "evals": evals, "interrupted": interrupted,
            "before": evals[0] if evals and evals[0]["step"] == 0 else None,
            "after": evals[-1] if evals and evals[-1]["step"] == step and step > 0 else None}


def format_table(before: dict | None, after: dict | None) -> str:
    """Before/after evaluation as a small markdown table."""
    cols = [(name, e) for name, e in (("before", before), ("after", after)) if e]
    if not cols:
        return "(no evaluation)"
    rows = [(f"pass@{k}", lambda e, k=k: e["pass@k"][k]) for k in cols[0][1]["pass@k"]] + [
        ("entropy", lambda e: e["entropy"]), ("distinct correct", lambda e: e["distinct_correct"]),
        ("response length", lambda e: e["response_len"])]
    lines = ["| metric | " + " | ".join(n for n, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{value(e):.3f}" for _, e in cols) + " |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, overwrite = parse_command_line(argv)
        t = time.time()
        res = train(cfg, overwrite=overwrite)
    except ConfigError as e:
        print(f"train.py: error: {named_by_source(e)}", file=sys.stderr)
        return 2
    except (DataError, ModelLoadError, CheckpointError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"train.py: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop (e.g. during evaluation)
        print("train.py: interrupted; the checkpoints already written are complete", file=sys.stderr)
        return 130
    if res["interrupted"]:  # a checkpoint is saved, but the run stopped early: the shell's code for Ctrl-C
        return 130
    e = res["before"] or res["after"]
    if e:
        print(f"\nheld-out: {e['prompts']} prompts x {e['n']} samples")
    print(format_table(res["before"], res["after"]))
    print(f"\n{res['out']}: metrics.jsonl, eval.jsonl, config.json, checkpoints/, policy/  ({time.time() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
