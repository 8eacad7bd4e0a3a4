"""ARM-weighted GRPO, one readable loop.  `python train.py` trains the built-in toy on a CPU.

    python train.py                                   # toy: eval, train with ARM, eval, before/after table
    python train.py --algo grpo --steps 100           # plain GRPO (= --algo arm --alpha 0)
    python train.py --model Qwen2.5-0.5B-Instruct --data gsm8k_train.jsonl --template qwen-chat --device cuda
    python train.py --resume runs/20260101-120000     # continue from the last checkpoint
    python train.py --config runs/.../config.json --out runs/again   # rerun a run (flags override the file)

Outputs (runs/<timestamp>/ or --out, never a folder holding another run): metrics.jsonl (one line
per step), eval.jsonl (one line per evaluation), config.json, checkpoints/step_N/ and the final
policy/ (a Hugging Face folder).
Around the loop: config.py (settings, flags), data.py (problems), templates.py (chat prompts),
checkpoint.py (the run folder: where it writes, resume, checkpoints, Ctrl-C), with model.py,
sampler.py, verifier.py and arm.py beneath.

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
  fixed before any sweep). `--algo grpo` sets alpha = 0, which is GRPO bit for bit.
  ARM's shift is applied to every response of a group with at least one correct answer, wrong
  ones and all-correct groups included, as the formula is written (`--all-correct grpo`: not
  to all-correct groups). Groups with no correct answer keep GRPO's A (= 0 for binary rewards).
  Our ablations take the formula's two parts apart: `--shift-rows correct` shifts correct
  responses only; `--shift-center correct-mean` compares c(o|q) with the mean c(o|q) of the
  group's correct responses instead of c(q) (both together: a zero-sum re-weighting among them).
- `--toy equal-paths` selects the second built-in toy (toy.py): paths executed equally well.
- A = (r - mean r) / (std r + 1e-6) with the population std (arm.grpo_advantages); groups whose
  rewards are all equal get exactly 0 and are counted (`equal_reward_groups`). `--adv-scale none`
  is Dr.GRPO's r - mean r.
- c(q) is inverse prompt perplexity at the sampling temperature (the paper's exact form is not
  public), read off the sampler's prefill: no extra forward pass. c(o|q) uses the rollout's
  log-probs (pi_old, constants), low_frac = 0.2 (`--low-frac`; 1.0 = plain length-normalised).
- Loss: token-mean over the whole mini-batch (DAPO), asymmetric clip eps_low = 0.2,
  eps_high = 0.28, no entropy bonus, no KL by default (`--kl-coef` > 0 adds the k3 estimator to
  a frozen copy of the initial model, loaded only then). `--loss-agg seq-mean-token-mean` is the
  original GRPO, `--loss-agg constant` is Dr.GRPO (divided by --max-new-tokens).
- One policy update per rollout by default (`--epochs 1 --mini-batches 1`): the ratio is then 1
  and the clip never fires; the surrogate's *value* is then just minus the token-mean advantage
  (~0 under GRPO: advantages sum to 0 per group) while its gradient is not. What carries the
  signal is logged: grad_norm, adv_abs_mean, zero_adv_frac. AdamW, global-norm clipping at 1.0,
  linear warm-up then a constant learning rate.
- Rewards are binary (verifier.verify), no format or length reward. Responses cut at
  --max-new-tokens keep their reward (almost always 0: no answer) and are counted (`truncated`).
- Training log-probs are recomputed at the sampling temperature from the full distribution (before
  top-p), exactly as sampled; masks come from lengths, never token ids. The LM head runs only at the
  response tokens, a chunk at a time (sampler.chunked_logprobs): the same numbers as
  sampler.logits_to_logprobs on full logits, which `--no-chunk-logprobs` keeps for comparison.
  `--grad-checkpoint` recomputes each decoder layer's activations in the backward pass.
- Evaluation samples at the training temperature with its own seeded generator (`--eval-seed`):
  the same held-out prompts and the same random stream for every run, and the training RNG
  never moves, so evaluating does not change training.
- Full-batch equivalence: micro-batches are weighted so that the gradient of a mini-batch equals
  the gradient of its loss computed in one piece (`test_micro_batching_equals_full_batch`).
"""
from __future__ import annotations

import dataclasses
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import arm
import verifier
from checkpoint import (CheckpointError, append_jsonl, choose_run_folder, ctrl_c_finishes_the_step, find_checkpoint,
                        restore, resume_point, save_checkpoint, start_run_folder, write_jsonl)
from config import Config, ConfigError, key_error, named_by_source, parse_command_line, resolve_device
from data import DataError, load_problems, take_batch
from model import ModelLoadError, load_model, load_tokenizer, save_model
from sampler import Generation, chunked_logprobs, generate, logits_to_logprobs
from templates import TURN_TOKENS, encode_prompts
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
    column T0 - 1 + t: the first response token by the last prompt column (3 here). That is why
    response_logits slices from T0 - 1. gen.tokens / gen.logprobs / gen.mask are the response part
    alone, (B, N), column t = response token t."""
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
    T0 = max(len(p) for p in prompt_ids)
    P = len(prompt_ids)
    pids = torch.zeros(P, T0, dtype=torch.long, device=device)
    for i, p in enumerate(prompt_ids):
        pids[i, T0 - len(p):] = torch.tensor(p, dtype=torch.long)
    plen = torch.tensor([len(p) for p in prompt_ids], device=device)
    pmask = torch.arange(T0, device=device)[None, :] >= (T0 - plen)[:, None]  # (P, T0) from lengths
    input_ids = torch.cat([pids.repeat_interleave(G, 0), gen.tokens], 1)  # (B, T0 + N)
    attn_mask = torch.cat([pmask.repeat_interleave(G, 0), gen.mask], 1)  # (B, T0 + N)
    return Rollout(problems, prompt_ids, gen, texts, input_ids, attn_mask, T0)


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


def autocast(cfg: Config, device: torch.device):
    """bf16 autocast on CUDA (weights and optimizer stay float32); nothing on CPU."""
    if device.type == "cuda" and cfg.dtype in ("auto", "bfloat16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def response_logits(model, input_ids: torch.Tensor, attn_mask: torch.Tensor, T0: int, n: int, *,
                    grad_checkpoint: bool = False) -> torch.Tensor:
    """Logits that predict the first n response tokens: (b, T0 + n) ids -> (b, n, V), row t predicting
    response token t (column T0 + t) from column T0 - 1 + t (the picture in Rollout).
    note: the model computes logits for the prompt positions too; we slice them away. This is the
    full-logits path (--no-chunk-logprobs); sampled_logprobs' default never builds these logits."""
    logits = model(input_ids[:, : T0 + n], attn_mask[:, : T0 + n], grad_checkpoint=grad_checkpoint)  # (b, T0 + n, V)
    return logits[:, T0 - 1: T0 - 1 + n]  # columns T0 - 1 .. T0 + n - 2 predict columns T0 .. T0 + n - 1


def sampled_logprobs(model, ro: Rollout, rows, n: int, cfg: Config, *, entropy: bool = False,
                     logprobs: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(log pi of the sampled tokens (b, n), mean token entropy (0-dim, no gradient) or None) of the first
    n response tokens of `rows` (a tensor or slice of rows), at the sampling temperature, as
    sampler.generate computed pi_old; the entropy is over the valid tokens. log pi is 0 after a row's
    end (policy_loss masks it). Two paths, with the same numbers (bit-identical on CPU; tests):
      default               the model returns hidden states (b, T0 + n, C); the LM head runs only at the
                            valid response positions, a chunk at a time (sampler.chunked_logprobs): no
                            (b, n, V) float32 log-softmax, no float32 copy for the entropy
      --no-chunk-logprobs   full logits (b, T0 + n, V), then log_softmax of the response part (the
                            earlier path, kept for bench/memory.py's comparison)"""
    T0, device = ro.T0, ro.input_ids.device
    ids, am = ro.input_ids[rows, : T0 + n], ro.attn_mask[rows, : T0 + n]  # (b, T0 + n)
    tokens, mask = ro.gen.tokens[rows, :n], ro.gen.mask[rows, :n]  # (b, n)
    t = cfg.temperature
    if not cfg.chunk_logprobs:
        with autocast(cfg, device):
            logits = response_logits(model, ids, am, T0, n, grad_checkpoint=cfg.grad_checkpoint)  # (b, n, V)
        # the entropy first, while only the logits exist: its float32 copies are gone before the log-softmax
        # and its gradients are made, so the peak stays the backward pass's, as in the earlier code
        ent = arm.token_entropy(logits.detach().float() / t, mask) if entropy else None
        logp = logits_to_logprobs(logits, t).gather(-1, tokens[..., None]).squeeze(-1) if logprobs else None
        return logp, ent
    b, T = ids.shape
    with autocast(cfg, device):
        h = model(ids, am, hidden_states=True, grad_checkpoint=cfg.grad_checkpoint)  # (b, T0 + n, C)
        # row of h.flatten(0, 1) that predicts each valid response token: column T0 - 1 + t of its row
        at = (torch.arange(b, device=device)[:, None] * T + T0 - 1 + torch.arange(n, device=device))[mask]  # (M,)
        lp, ent = chunked_logprobs(h.flatten(0, 1), model.lm_head.weight, at, tokens[mask] if logprobs else None,
                                   t, entropy=entropy)  # (M,), 0-dim
    logp = lp.new_zeros(b, n).masked_scatter(mask, lp) if logprobs else None  # (b, n)
    return logp, ent if entropy else None


class NonFiniteError(RuntimeError):
    """A NaN/inf loss or gradient: the run stops, the last good checkpoint stays."""


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
    device = ro.input_ids.device
    g = ro.gen
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
            for s in range(0, mb_rows, cfg.micro_batch):  # one forward + backward each
                r = rows[s: s + cfg.micro_batch]
                n = int(g.lengths[r].max())  # trim the micro-batch to its longest response
                mask = g.mask[r, :n]  # (b, n) from lengths
                # log pi (b, n) with gradient; the entropy of the policy that sampled (first pass, before
                # this step's updates), without
                logp, ent = sampled_logprobs(model, ro, r, n, cfg, entropy=epoch == 0)
                ref_logp = None
                if ref_model is not None:
                    with torch.no_grad():
                        ref_logp = sampled_logprobs(ref_model, ro, r, n, cfg)[0]
                loss, stats = arm.policy_loss(logp, g.logprobs[r, :n], adv_rows[r], mask,
                                              eps_low=cfg.eps_low, eps_high=cfg.eps_high, agg=cfg.loss_agg,
                                              ref_logprobs=ref_logp, kl_coef=cfg.kl_coef, max_len=cfg.max_new_tokens)
                w = int(mask.sum()) / mb_tokens if cfg.loss_agg == "token-mean" else len(r) / mb_rows  # see docstring
                if not torch.isfinite(loss):  # note: a CPU-GPU sync point per micro-batch
                    raise NonFiniteError(f"step {step}: the loss is {loss.item()} (epoch {epoch}, mini-batch {m})")
                (loss * w).backward()
                tok = int(mask.sum())
                stats = {k: v for k, v in stats.items() if k not in ("adv_abs_mean", "zero_adv_frac")}  # step_stats has them
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
    base = arm.grpo_advantages(rewards, scale=cfg.adv_scale)
    shift = (adv - base)  # ARM's alpha (c(q) - c(o|q)) where applied, 0 elsewhere
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
    c_o = c_o.cpu()
    c_q = c_q.cpu() if c_q is not None else None
    seq_lp = None  # the baseline ranks a group's responses by their mean token log-prob
    if cfg.algo == "unlikely":
        seq_lp = arm.mean_logprob(ro.gen.logprobs, ro.gen.mask).view(-1, cfg.group_size).cpu()
    adv = compute_advantages(rewards, c_q, c_o, cfg, seq_logprob=seq_lp)
    t3 = time.perf_counter()
    upd = policy_update(model, ref_model, optimizer, ro, adv, cfg, step)
    sync()
    t4 = time.perf_counter()
    return {**step_stats(ro, rewards, c_q, c_o, adv, cfg), **upd,
            "t_rollout": t1 - t0, "t_reward": t2 - t1, "t_conf": t3 - t2, "t_update": t4 - t3}


# ----------------------------------------------------------------------------------------------
# evaluation: pass@k, entropy, distinct correct solutions


def pass_ks(n: int) -> list[int]:
    """k = 1, 2, 4, ..., and n itself."""
    ks = [2 ** i for i in range(n.bit_length()) if 2 ** i <= n]
    return ks + ([n] if ks[-1] != n else [])


@torch.no_grad()
def evaluate(model, tokenizer, problems: list[dict], cfg: Config, *, n: int | None = None, seed: int | None = None,
             path_fn=None, eos_ids: list[int] | None = None, desc: str = "eval") -> dict:
    """n samples per held-out problem (at the training temperature/top-p) ->
    pass@k (unbiased, arm.pass_at_k) for k = 1, 2, 4, ..., n; mean token entropy of the policy
    over the sampled tokens; distinct correct solutions per problem (path_fn of the correct
    ones); std of c(o|q) over correct samples (mean over problems with >= 2); mean length; on the
    toy, per solution path: samples correct and wrong, and their mean c(o|q).
    Uses its own generator (seeded by `seed`), so evaluating never moves the training RNG.
    A progress bar (`desc`) shows the time left; it goes away when the evaluation ends."""
    n = n or cfg.eval_n
    seed = cfg.eval_seed if seed is None else seed
    eos_ids = eos_ids if eos_ids is not None else list(getattr(model, "eos_token_ids", []))
    device = next(model.parameters()).device
    gen_rng = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    chunk = max(1, (cfg.prompts_per_step * cfg.group_size) // n)  # rows per generate call ~ the rollout's
    n_correct, distinct, spreads, lengths, ent_num, ent_den, truncated = [], [], [], [], 0.0, 0, 0
    by_path = {}  # path -> [n correct, n wrong, sum c(o|q) correct, sum c(o|q) wrong]
    by_type = {}  # problems with a "type" (hidden-type toy): type -> path -> the same four tallies
    bar = tqdm(total=len(problems), desc=desc, unit="prompt", leave=False, dynamic_ncols=True, mininterval=1.0)
    for i in range(0, len(problems), chunk):
        probs = problems[i: i + chunk]
        ro = rollout(model, tokenizer, probs, cfg, gen_rng, eos_ids, G=n, prompt_logprobs=False)
        rewards = compute_rewards(ro.texts, [p["answer"] for p in probs], n)
        c_o = arm.answer_confidence(ro.gen.logprobs, ro.gen.mask, low_frac=cfg.low_frac).view(-1, n).cpu()
        for p in range(len(probs)):
            ok = rewards[p] > 0.5
            n_correct.append(int(ok.sum()))
            named = [path_fn(ro.texts[p * n + j]) for j in range(n)] if path_fn else [None] * n
            distinct.append(len({named[j] for j in range(n) if ok[j]} - {None}))
            if not cfg.data:  # the toy's few named paths (with real data every text is its own "path")
                for j in range(n):
                    s = by_path.setdefault(str(named[j]), [0, 0, 0.0, 0.0])
                    s[0 if ok[j] else 1] += 1
                    s[2 if ok[j] else 3] += float(c_o[p, j])
                    if "type" in probs[p]:
                        t = by_type.setdefault(probs[p]["type"], {}).setdefault(str(named[j]), [0, 0, 0.0, 0.0])
                        t[0 if ok[j] else 1] += 1
                        t[2 if ok[j] else 3] += float(c_o[p, j])
            if ok.sum() >= 2:
                spreads.append(float(c_o[p][ok].std(unbiased=False)))
        lengths += ro.gen.lengths.tolist()
        truncated += int((~ro.gen.finished).sum())
        B = ro.gen.tokens.shape[0]
        for s in range(0, B, cfg.micro_batch):  # entropy needs every logit: one forward pass per micro-batch
            r = slice(s, s + cfg.micro_batch)
            k = int(ro.gen.lengths[r].max())
            mask = ro.gen.mask[r, :k]
            ent = sampled_logprobs(model, ro, r, k, cfg, entropy=True, logprobs=False)[1]
            ent_num += float(ent) * int(mask.sum())
            ent_den += int(mask.sum())
        bar.update(len(probs))
    bar.close()
    model.train(was_training)
    P = len(n_correct)
    types = {t: [c for c, q in zip(n_correct, problems) if q.get("type") == t] for t in sorted(by_type)}
    return {
        "pass@k": {str(k): sum(arm.pass_at_k(n, c, k) for c in n_correct) / P for k in pass_ks(n)},
        "accuracy": sum(n_correct) / (P * n),
        "entropy": ent_num / max(ent_den, 1),
        "distinct_correct": sum(distinct) / P,
        "conf_o_std_correct": sum(spreads) / len(spreads) if spreads else None,
        "response_len": sum(lengths) / len(lengths),
        "truncated": truncated,
        "prompts": P,
        "n": n,
        "n_correct": n_correct,
        # per solution path (path_fn; "None" = unrecognised): samples correct / wrong, mean c(o|q) of each
        "paths": {k: {"correct": s[0], "wrong": s[1], "conf_correct": s[2] / s[0] if s[0] else None,
                      "conf_wrong": s[3] / s[1] if s[1] else None} for k, s in sorted(by_path.items())},
        # per problem type, when the problems have one: pass@k and samples correct / wrong per path
        **({"by_type": {t: {"prompts": len(c), "pass@k": {str(k): sum(arm.pass_at_k(n, x, k) for x in c) / len(c)
                                                             for k in pass_ks(n)},
                            "paths": {k: {"correct": v[0], "wrong": v[1], "conf_correct": v[2] / v[0] if v[0] else None,
                                          "conf_wrong": v[3] / v[1] if v[1] else None}
                                      for k, v in sorted(by_type[t].items())}}
                        for t, c in types.items()}} if by_type else {}),
    }


# ----------------------------------------------------------------------------------------------
# the run


def lr_lambda(warmup: int):
    """Linear warm-up over `warmup` steps, then constant."""
    return lambda s: min(1.0, (s + 1) / warmup) if warmup > 0 else 1.0


def chat_eos_ids(model, tokenizer, cfg: Config) -> list[int]:
    """The model's EOS ids, plus the chat template's end-of-turn token (<|im_end|>, <|eot_id|>):
    a base model's chat turn ends there."""
    ids = list(getattr(model, "eos_token_ids", []))
    if cfg.template in TURN_TOKENS:
        start, end = TURN_TOKENS[cfg.template]
        if tokenizer.token_to_id(start) is None or tokenizer.token_to_id(end) is None:
            raise key_error("template", f"{cfg.template} needs {start}/{end} in the tokenizer; this model has none")
        ids = list(dict.fromkeys(ids + [tokenizer.token_to_id(end)]))
    if not ids:
        raise key_error("model", "no EOS token id in generation_config.json/config.json: responses would never end")
    return ids


def check_prompts_fit(model, tokenizer, problems: list[dict], cfg: Config) -> None:
    """A prompt plus --max-new-tokens must fit the model's positions (checked on the first of each set)."""
    for p in problems:
        prompt_len = len(encode_prompts(tokenizer, [p["prompt"]], cfg.template)[0])
        if prompt_len + cfg.max_new_tokens > model.config.max_position_embeddings:
            raise key_error("max_new_tokens", f"prompt + {cfg.max_new_tokens} new tokens exceed the model's "
                              f"max_position_embeddings {model.config.max_position_embeddings}")


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
    ref_model = None
    if cfg.kl_coef > 0:  # the frozen initial policy, only when the KL term is on
        ref_model = load_model(base_model_path, device=device, dtype=torch.float32).eval().requires_grad_(False)
    check_prompts_fit(model, tokenizer, train_set[:1] + held[:1], cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.warmup_steps))
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history = {"metrics": [], "evals": []}
    step, data_pos = 0, 0
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2 ** 32)
    torch.manual_seed(cfg.seed)
    if ckpt:  # optimizer, scheduler and every RNG as they were
        step, data_pos, history = restore(ckpt, optimizer, scheduler, generator, state)
        log(f"resuming from {ckpt} at step {step}")
    start_run_folder(out, dataclasses.asdict(cfg), history, overwrite)

    def run_eval(at_step: int):
        if held:
            history["evals"].append({"step": at_step, **evaluate(model, tokenizer, held, cfg, path_fn=path_fn,
                                                                  eos_ids=eos_ids, desc=f"eval at step {at_step}")})
            write_jsonl(out / "eval.jsonl", history["evals"])

    def checkpoint():
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
                    last_ckpt = checkpoint()
            bar.close()
        except NonFiniteError as e:
            good = last_ckpt or (find_checkpoint(out) if list((out / "checkpoints").glob("step_*")) else None)
            raise NonFiniteError(f"{e}; stopped. Last good checkpoint: {good or 'none (nothing saved yet)'}") from None

    # finish: a checkpoint unless the last step saved one; the final evaluation and policy/ unless interrupted
    interrupted = stop["asked"]
    if interrupted or not cfg.save_every or step % cfg.save_every:
        last_ckpt = checkpoint()
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
    if res["interrupted"]:
        return 0
    e = res["before"] or res["after"]
    if e:
        print(f"\nheld-out: {e['prompts']} prompts x {e['n']} samples")
    print(format_table(res["before"], res["after"]))
    print(f"\n{res['out']}: metrics.jsonl, eval.jsonl, config.json, checkpoints/, policy/  ({time.time() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
