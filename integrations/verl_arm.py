"""ARM for verl: an advantage estimator registered as "arm", plus the trainer hook that feeds it.

verl (0.9.1) calls a custom estimator with token_level_rewards, response_mask, index (the uid) and
config only. ARM also needs, per response, c(o|q) from the old log-probs (METHOD.md definition 2)
and, per prompt, c(q) from the prompt's log-probs (definition 3). So:
  - compute_arm_outcome_advantage, registered with @register_adv_est("arm"), takes old_log_probs
    and prompt_conf as keyword arguments and refuses, in one line, to run without what it needs.
  - ARMPPOTrainerSync, a subclass of verl's v1 sync trainer, hands them over: verl's own
    _compute_advantage already fetches old_log_probs from the TransferQueue; for the length of
    that call its compute step is arm_compute_step, which passes them to the estimator and logs
    ARM's shift statistics (arm/shift_mean, arm/shift_abs_mean, arm/shifted_frac, arm/conf_o_mean).
  - setup() registers both inside every Ray process (verl builds its trainer in a Ray actor):
    pass it as Ray's worker_process_setup_hook (integrations/README.md, the verl section). It puts ARMPPOTrainerSync in
    verl's trainer registry under "sync": for any estimator but "arm" it is verl's sync trainer.

c(q) is the gap: verl 0.9.1 keeps no prompt log-probs (its actor's compute_log_prob scores the
response only), so the hook passes prompt_conf=None and the paper's shift_center="prompt" stops
with a one-line error; shift_center="correct-mean" needs no c(q) and runs. arm_compute_step passes
a batch field "arm_prompt_conf" (one c(q) per response row) when the DataProto has one, but nothing
fills it yet: that needs a rollout returning prompt log-probs (vLLM's prompt_logprobs) and
ARMPPOTrainerSync fetching the field too (verl's advantage step fetches a fixed list of fields).

The convention (algorithm.arm.base):
  "verl" (default)  A~_i = verl's GRPO advantage + arm.py's shift alpha (c(q) - c(o_i|q)), where
                    verl's GRPO uses the sample std (torch.std), eps 1e-6, and gives a group of one
                    its raw score (mean 0, std 1): alpha = 0 is verl's "grpo" exactly.
  "arm"             A~_i = arm.arm_advantages (population std, eps 1e-6), as train.py computes it.
The settings live under algorithm.arm (alpha, low_frac, all_correct, shift_rows, shift_center,
base); algorithm.norm_adv_by_std_in_grpo=False is Dr.GRPO (arm.py's scale="none").
Old log-probs are at the rollout temperature: verl's _compute_old_log_prob passes it to the actor.
"""
import os
import sys
from collections import defaultdict

import numpy as np
import torch
from verl.trainer.ppo import core_algos

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: arm.py
import arm  # noqa: E402

DEFAULTS = {"alpha": 1.0, "low_frac": 0.2, "all_correct": "arm", "shift_rows": "group", "shift_center": "prompt",
            "base": "verl"}


def arm_settings(config) -> dict:
    """algorithm.arm from verl's config (a DictConfig, an AlgoConfig or a dict), over DEFAULTS."""
    given = (config.get("arm", None) if config is not None else None) or {}
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"verl_arm: unknown key(s) algorithm.arm.{sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **dict(given)}
    if s["base"] not in ("verl", "arm"):
        raise ValueError(f"verl_arm: algorithm.arm.base must be 'verl' or 'arm', got {s['base']!r}")
    return s


def arm_advantages_by_uid(scores: torch.Tensor, c_q: torch.Tensor | None, c_o: torch.Tensor, index: np.ndarray, *,
                          alpha: float, all_correct: str = "arm", shift_rows: str = "group",
                          shift_center: str = "prompt", scale: str = "std") -> tuple[torch.Tensor, torch.Tensor]:
    """arm.arm_advantages over groups of rows sharing a uid (any order, any group size).
    scores (B,), c_q (B,) (the row's prompt) or None, c_o (B,) -> (A~ (B,), shift (B,)) where
    shift = arm.arm_advantages - arm.grpo_advantages: alpha (c(q) - c(o|q)) on the rows ARM touches."""
    groups = defaultdict(list)
    for i, uid in enumerate(index):
        groups[uid].append(i)
    adv, shift = torch.zeros(len(scores)), torch.zeros(len(scores))
    for rows in groups.values():
        r = scores[rows].float()[None]  # (1, G)
        cq = None if c_q is None else c_q[rows[:1]].float()  # (1,)
        a = arm.arm_advantages(r, cq, c_o[rows].float()[None], alpha=alpha, scale=scale, all_correct=all_correct,
                               shift_rows=shift_rows, shift_center=shift_center)
        adv[rows] = a[0]
        shift[rows] = (a - arm.grpo_advantages(r, scale=scale))[0]
    return adv, shift


def arm_outcome_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: np.ndarray,
                          old_log_probs: torch.Tensor | None, prompt_conf: torch.Tensor | None, config=None,
                          norm_adv_by_std_in_grpo: bool | None = None, epsilon: float = 1e-6
                          ) -> tuple[torch.Tensor, dict]:
    """METHOD.md definition 4 for verl: (A~ (B, T) on the response's tokens, stats for the log).
    token_level_rewards (B, T) (an outcome reward: summed), response_mask (B, T), index (B,) uids,
    old_log_probs (B, T) under the rollout policy, prompt_conf (B,) c(q) of each row's prompt or None.
    norm_adv_by_std_in_grpo None reads algorithm.norm_adv_by_std_in_grpo (default True)."""
    s = arm_settings(config)
    if old_log_probs is None:
        raise ValueError("verl_arm: the 'arm' estimator needs old_log_probs; verl passes only rewards, mask and uid "
                         "to a custom estimator: train with ARMPPOTrainerSync (verl_arm.setup as Ray's setup hook)")
    if s["shift_center"] == "prompt" and prompt_conf is None:
        raise ValueError("verl_arm: shift_center='prompt' needs c(q), and verl 0.9.1 keeps no prompt log-probs: set "
                         "algorithm.arm.shift_center=correct-mean")
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = bool(config.get("norm_adv_by_std_in_grpo", True)) if config is not None else True
    scores = token_level_rewards.sum(dim=-1)  # (B,)
    c_o = arm.answer_confidence(old_log_probs, response_mask.bool(), low_frac=s["low_frac"])  # (B,) definition 2
    adv, shift = arm_advantages_by_uid(scores, prompt_conf, c_o, index, alpha=s["alpha"],
                                       all_correct=s["all_correct"], shift_rows=s["shift_rows"],
                                       shift_center=s["shift_center"],
                                       scale="std" if norm_adv_by_std_in_grpo else "none")
    if s["base"] == "verl":
        base, _ = core_algos.compute_grpo_outcome_advantage(token_level_rewards, response_mask, index, epsilon=epsilon,
                                                            norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo)
        out = base + shift.to(base)[:, None] * response_mask
    else:
        out = adv.to(token_level_rewards)[:, None] * response_mask
    stats = {"arm/shift_mean": shift.mean().item(), "arm/shift_abs_mean": shift.abs().mean().item(),
             "arm/shifted_frac": (shift != 0).float().mean().item(), "arm/conf_o_mean": c_o.mean().item()}
    return out, stats


@core_algos.register_adv_est("arm")
def compute_arm_outcome_advantage(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: np.ndarray,
                                  config=None, old_log_probs: torch.Tensor | None = None,
                                  prompt_conf: torch.Tensor | None = None, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """verl's estimator signature: (advantages, returns), both A~ (B, T). Called by verl itself it gets no
    old_log_probs and says so; ARMPPOTrainerSync calls it with them."""
    out, _ = arm_outcome_advantage(token_level_rewards, response_mask, index, old_log_probs, prompt_conf, config)
    return out, out


def arm_compute_step(data, batch_keys=None, adv_estimator="arm", gamma=1.0, lam=1.0, num_repeat=1,
                     norm_adv_by_std_in_grpo=True, config=None, metrics: dict | None = None):
    """verl's compute_advantage_for_multi_trajectories for adv_estimator "arm": the estimator gets the
    batch's old_log_probs (and arm_prompt_conf when a rollout filled it). data: a verl DataProto."""
    b = data.batch
    prompt_conf = b["arm_prompt_conf"] if "arm_prompt_conf" in b.keys() else None
    out, stats = arm_outcome_advantage(b["token_level_rewards"], b["response_mask"], data.non_tensor_batch["uid"],
                                       b["old_log_probs"], prompt_conf, config, norm_adv_by_std_in_grpo)
    b["advantages"], b["returns"] = out, out
    if metrics is not None:
        metrics.update(stats)
    return data


def trainer_class():
    """ARMPPOTrainerSync, built on first use: verl's v1 trainer imports TransferQueue and Ray."""
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    class ARMPPOTrainerSync(PPOTrainerSync):
        """verl's sync trainer; with adv_estimator=arm its advantage step hands ARM its inputs."""

        def _compute_advantage(self, batch, metrics):
            if self.config.algorithm.adv_estimator != "arm":
                return super()._compute_advantage(batch, metrics)
            # verl's step fetches old_log_probs but would not pass them on: for this call, ours does
            original = trainer_base.compute_advantage_for_multi_trajectories
            trainer_base.compute_advantage_for_multi_trajectories = (
                lambda data, **kw: arm_compute_step(data, **kw, metrics=metrics))
            try:
                return super()._compute_advantage(batch, metrics)
            finally:
                trainer_base.compute_advantage_for_multi_trajectories = original

    return ARMPPOTrainerSync


def setup() -> None:
    """Ray's worker_process_setup_hook: import this module (registers "arm") and make verl's "sync"
    trainer mode build ARMPPOTrainerSync."""
    from verl.trainer.ppo.v1 import trainer_base
    if getattr(trainer_base.TRAINER_REGISTRY.get("sync"), "__name__", "") != "ARMPPOTrainerSync":
        trainer_base.TRAINER_REGISTRY["sync"] = trainer_class()
