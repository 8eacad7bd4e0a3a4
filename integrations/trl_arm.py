"""ARM for TRL: a GRPOTrainer whose advantages get ProGRPO's ARM shift, computed by arm.py.

    from trl_arm import ARMGRPOConfig, ARMGRPOTrainer
    trainer = ARMGRPOTrainer(model=..., reward_funcs=..., args=ARMGRPOConfig(alpha=1.0, ...), train_dataset=...)

What it does, once per generation batch (TRL's `_generate_and_score_completions`, the override TRL's
maintainers advise in TRL issue 4525):
  1. TRL samples, scores and computes its own GRPO advantages A_i (unchanged).
  2. Log-probs at the sampling temperature (TRL's `_get_per_token_logps_and_entropies`, the same
     forward TRL trains with): one extra no-grad forward over prompt + completion gives both the
     prompt's and the completion's token log-probs. When TRL has already computed
     `old_per_token_logps` (gradient accumulation not aligned with generation, or vLLM with
     importance-sampling correction), those are reused for c(o|q) and the extra forward runs over
     the prompts only (and not at all under shift_center="correct-mean", which needs no c(q)).
  3. METHOD.md definition 2, c(o|q) = arm.answer_confidence over the completion's sampled tokens
     (completion_mask, times tool_mask in tool-calling runs: tool output is not sampled).
     METHOD.md definition 3, c(q) = arm.prompt_confidence over the prompt tokens that have a
     prediction: a token counts only if it and the token before it are real (not left padding),
     so the first prompt token, which nothing predicts, is left out.
  4. c(q) and c(o|q) are gathered from all processes, so each group is whole (a group can span
     two processes); "the group has a correct answer" is decided on the gathered rewards, the
     shift computed on whole groups, and each process keeps its own slice (TRL's process_slice).
  5. METHOD.md definition 4 by arm.py: shift = arm.arm_advantages(...) - arm.grpo_advantages(...),
     i.e. alpha (c(q) - c(o_i|q)) on the rows ARM touches, 0 elsewhere.

The convention (arm_base):
  "trl" (default)  A~_i = TRL's A_i + shift. TRL's A_i uses the *sample* std (ddof 1) and eps 1e-4
                   (scale_rewards "group"; "batch" and "none" as TRL does them), so alpha = 0 is
                   exactly TRL's own GRPO and GRPOTrainer users change one thing at a time.
  "arm"            A~_i = arm.arm_advantages(rewards, c(q), c(o|q)) as train.py computes it:
                   population std, eps 1e-6 (scale_rewards "group" -> "std", "none" -> "none").
Rewards: "correct" means the weighted sum of the reward functions' raw rewards is > 0 (arm.py's rule);
a completion every reward function left unscored (all None -> NaN) counts as wrong and keeps the
advantage 0 that TRL gives it. Text-only: multimodal batches are refused.
Logged (like train.py's metrics.jsonl): arm/shift_mean, arm/shift_abs_mean, arm/conf_q_mean,
arm/conf_o_mean, arm/conf_o_std, arm/shifted_frac, arm/time (seconds of step 2's extra work).
"""
import os
import sys
import time
from dataclasses import dataclass, field

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: arm.py
import arm  # noqa: E402


@dataclass
class ARMGRPOConfig(GRPOConfig):
    """GRPOConfig plus ARM's settings (arm.py's keyword arguments; the defaults are the paper)."""
    alpha: float = field(default=1.0, metadata={"help": "ARM's alpha; 0 is GRPO exactly."})
    low_frac: float = field(default=0.2, metadata={"help": "c(o|q) averages the ceil(low_frac |o|) lowest log-probs."})
    all_correct: str = field(default="arm", metadata={"help": "'arm': shift all-correct groups too; 'grpo': leave them."})
    shift_rows: str = field(default="group", metadata={"help": "'group' (paper) or 'correct' (only correct rows)."})
    shift_center: str = field(default="prompt", metadata={"help": "'prompt' (c(q), paper) or 'correct-mean'."})
    arm_base: str = field(default="trl", metadata={"help": "'trl': TRL's A_i + ARM's shift; 'arm': arm.py's A~_i."})

    def __post_init__(self):
        super().__post_init__()
        for name, ok in (("alpha", self.alpha >= 0), ("low_frac", 0 < self.low_frac <= 1),
                         ("all_correct", self.all_correct in ("arm", "grpo")),
                         ("shift_rows", self.shift_rows in arm.SHIFT_ROWS),
                         ("shift_center", self.shift_center in arm.SHIFT_CENTER),
                         ("arm_base", self.arm_base in ("trl", "arm"))):
            if not ok:
                raise ValueError(f"ARMGRPOConfig: bad {name}={getattr(self, name)!r}")
        if self.arm_base == "arm" and self.scale_rewards not in ("group", "none"):
            raise ValueError(f"ARMGRPOConfig: arm_base='arm' needs scale_rewards 'group' or 'none', got {self.scale_rewards!r}")


def prompt_token_mask(prompt_mask: torch.Tensor) -> torch.Tensor:
    """Which predicted prompt tokens count for c(q): (B, Lp) 0/1 -> (B, Lp-1) bool, column j is token j+1.
    A token counts if it and its predecessor are real, which drops left padding and the first token."""
    m = prompt_mask.bool()
    return m[:, 1:] & m[:, :-1]


def arm_shift(rewards: torch.Tensor, c_q: torch.Tensor | None, c_o: torch.Tensor, num_generations: int, *,
              alpha: float, all_correct: str = "arm", shift_rows: str = "group", shift_center: str = "prompt",
              scale: str = "std") -> tuple[torch.Tensor, torch.Tensor]:
    """ARM over the whole (gathered) batch, groups of num_generations consecutive rows.
    rewards (B,) with NaN for unscored rows, c_q (B,) or None, c_o (B,) -> (arm.arm_advantages (B,),
    scale "std" or "none" (arm.py's; the shift does not depend on it),
    shift (B,)), where shift = arm.arm_advantages - arm.grpo_advantages (alpha (c(q) - c(o|q)) on the
    rows ARM touches, 0 elsewhere; equal up to float32 round-off). Unscored rows get 0 in both."""
    G = num_generations
    unscored = torch.isnan(rewards)
    R = torch.nan_to_num(rewards, nan=0.0).view(-1, G)  # (P, G); unscored counts as wrong
    cq = None if c_q is None else c_q.view(-1, G)[:, 0]  # (P,) the G rows of a group share the prompt
    kw = dict(alpha=alpha, all_correct=all_correct, shift_rows=shift_rows, shift_center=shift_center, scale=scale)
    adv = arm.arm_advantages(R, cq, c_o.view(-1, G), **kw).view(-1)  # (B,)
    shift = adv - arm.grpo_advantages(R, scale=scale).view(-1)
    zero = torch.zeros_like(adv)
    return torch.where(unscored, zero, adv), torch.where(unscored, zero, shift)


class ARMGRPOTrainer(GRPOTrainer):
    """TRL's GRPOTrainer with ARM advantages; see the module docstring for every choice."""

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._arm_rewards_per_func = rewards_per_func  # (B_all, n_funcs), gathered from every process
        return rewards_per_func

    def _arm_logprobs(self, out: dict, batch_size: int) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
        """(prompt log-probs (B, Lp-1) or None, prompt mask (B, Lp-1) or None, completion log-probs (B, C)),
        at the sampling temperature, from TRL's own log-prob forward (no grad)."""
        p_ids, p_mask, c_ids, c_mask = out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"]
        Lp = p_ids.size(1)
        need_q = self.args.shift_center == "prompt"
        old = out.get("old_per_token_logps")
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if old is not None:  # TRL already scored the completions: only the prompts are left
                c_lp = old
                p_lp = (self._get_per_token_logps_and_entropies(self.model, p_ids, p_mask, Lp - 1, batch_size=batch_size)[0]
                        if need_q and Lp > 1 else None)  # Lp = 1: TRL's fused head has nothing to score
            else:  # one forward over prompt + completion: column j is log pi(token j+1 | tokens <= j)
                ids, mask = torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1)  # (B, L)
                lp = self._get_per_token_logps_and_entropies(self.model, ids, mask, ids.size(1) - 1,
                                                             batch_size=batch_size)[0]  # (B, L-1)
                p_lp, c_lp = lp[:, :Lp - 1], lp[:, Lp - 1:]  # (B, Lp-1), (B, C)
        if not need_q:
            return None, None, c_lp
        if p_lp is None:  # one-token prompts: nothing is predicted, c(q) = 1 by arm.py's rule
            p_lp = c_lp.new_zeros((c_lp.size(0), 0))
        return p_lp, prompt_token_mask(p_mask), c_lp

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        t0 = time.perf_counter()
        if any(k in out for k in ("pixel_values", "num_images")):
            raise ValueError("ARMGRPOTrainer: multimodal batches are not supported (c(q) would need the image tokens)")
        mode = "train" if self.model.training else "eval"
        G = self.num_generations if mode == "train" else self.num_generations_eval
        batch_size = self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        p_lp, p_mask, c_lp = self._arm_logprobs(out, batch_size)
        sampled = out["completion_mask"] * out["tool_mask"] if "tool_mask" in out else out["completion_mask"]
        c_o = arm.answer_confidence(c_lp, sampled.bool(), low_frac=self.args.low_frac)  # (B,) def. 2
        c_q = arm.prompt_confidence(p_lp, p_mask) if p_lp is not None else None  # (B,) def. 3

        # Whole groups: gather the local rows of every process (in process order, as TRL's rewards are)
        B = c_o.size(0)
        c_o_all = self.accelerator.gather(c_o.float())
        c_q_all = self.accelerator.gather(c_q.float()) if c_q is not None else None
        rpf = self._arm_rewards_per_func
        rewards = (rpf * self.reward_weights.to(rpf.device).unsqueeze(0)).nansum(dim=1)  # (B_all,)
        rewards[torch.isnan(rpf).all(dim=1)] = torch.nan
        adv_all, shift_all = arm_shift(rewards, c_q_all, c_o_all, G, alpha=self.args.alpha,
                                       all_correct=self.args.all_correct, shift_rows=self.args.shift_rows,
                                       shift_center=self.args.shift_center,
                                       scale="none" if self.scale_rewards == "none" else "std")
        local = slice(self.accelerator.process_index * B, (self.accelerator.process_index + 1) * B)
        trl_adv = out["advantages"]
        if self.args.arm_base == "trl":
            out["advantages"] = trl_adv + shift_all[local].to(trl_adv)
        else:
            out["advantages"] = adv_all[local].to(trl_adv)

        m = self._metrics[mode]
        m["arm/shift_mean"].append(shift_all.mean().item())
        m["arm/shift_abs_mean"].append(shift_all.abs().mean().item())
        m["arm/shifted_frac"].append((shift_all != 0).float().mean().item())
        m["arm/conf_o_mean"].append(c_o_all.mean().item())
        m["arm/conf_o_std"].append(c_o_all.std(correction=0).item())
        if c_q_all is not None:
            m["arm/conf_q_mean"].append(c_q_all.mean().item())
        m["arm/time"].append(time.perf_counter() - t0)
        # for tests and debugging: what this process computed, before TRL shuffles and splits the batch
        self._arm_last = {"rewards": rewards, "c_q": c_q_all, "c_o": c_o_all, "trl_advantages": trl_adv,
                          "advantages": out["advantages"], "shift": shift_all}
        return out
