"""ARM for verl: an advantage estimator registered as "arm", plus the trainer hook that feeds it.

verl (0.9.1) calls a custom estimator with token_level_rewards, response_mask, index (the uid) and
config only. ARM also needs, per response, c(o|q) from the old log-probs (METHOD.md definition 2)
and, per prompt, c(q) from the prompt's log-probs (definition 3). So:
  - compute_arm_outcome_advantage, registered with @register_adv_est("arm"), takes old_log_probs
    and prompt_conf as keyword arguments and refuses, in one line, to run without what it needs.
  - ARMPPOTrainerSync, a subclass of verl's v1 sync trainer, hands them over:
      c(q): verl's actor (its engine-based workers, FSDP or Megatron) scores every input token, prompt
        included, and writes that full-sequence "log_probs" to the TransferQueue; verl's own
        _compute_old_log_prob then cuts it to the response (response_from_nested) for old_log_probs.
        Right after that step, and before the reference pass writes its own "log_probs" over the
        field, ARMPPOTrainerSync reads the prompt part back, computes each row's c(q) with
        arm.prompt_confidence (at the rollout temperature, which verl's step passes to the actor)
        and stores it as the per-row field "arm_prompt_conf". No extra forward pass.
      advantages: verl's own _compute_advantage already fetches old_log_probs; for the length of that
        call its compute step is arm_compute_step, which gets the batch's arm_prompt_conf too, passes
        both to the estimator and logs ARM's statistics (arm/shift_mean, arm/shift_abs_mean,
        arm/shifted_frac, arm/conf_o_mean, arm/conf_q_mean).
  - setup() registers both inside every Ray process (verl builds its trainer in a Ray actor):
    pass it as Ray's worker_process_setup_hook (integrations/README.md, the verl section). It puts
    ARMPPOTrainerSync in verl's trainer registry under "sync" (for any estimator but "arm" it is
    verl's sync trainer) and makes verl's other trainer modes refuse adv_estimator=arm in one line.

A group's c(q) is the mean of its rows' c(q): every row of a uid shares the prompt, so the rows agree
up to round-off (bf16 micro-batches of different composition); the mean makes the value the same for
every row of the group.

Versions: this relies on verl 0.9.1's layout (full-sequence log-probs from the actor, sliced in the
trainer). check_verl() refuses, at set-up, a verl outside VERL_PROVEN or whose old-log-prob step no
longer slices that way, and each step checks that the actor's log-probs still cover prompt + response.

The convention (algorithm.arm.base):
  "verl" (default)  A~_i = verl's GRPO advantage + arm.py's shift alpha (c(q) - c(o_i|q)), where
                    verl's GRPO uses the sample std (torch.std), eps 1e-6, and gives a group of one
                    its raw score (mean 0, std 1): alpha = 0 is verl's "grpo" exactly.
  "arm"             A~_i = arm.arm_advantages (population std, eps 1e-6), as train.py computes it.
The settings live under algorithm.arm (alpha, low_frac, all_correct, shift_rows, shift_center,
base); algorithm.norm_adv_by_std_in_grpo=False is Dr.GRPO (arm.py's scale="none").
Old log-probs are at the rollout temperature: verl's _compute_old_log_prob passes it to the actor.
"""
import inspect
import os
import sys
from collections import defaultdict

import numpy as np
import torch
import verl
from verl.trainer.ppo import core_algos

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root: arm.py
import arm  # noqa: E402

DEFAULTS = {"alpha": 1.0, "low_frac": 0.2, "all_correct": "arm", "shift_rows": "group", "shift_center": "prompt",
            "base": "verl"}
VERL_PROVEN = ("0.9.1",)  # the verl versions integrations/tests passed on (requirements-verl.txt pins the same)
PROMPT_CONF = "arm_prompt_conf"  # the per-row TransferQueue field holding c(q), definition 3


def check_verl() -> None:
    """Refuse, at set-up and in one line, a verl this hook is not proven on: another version, or a v1
    trainer whose old-log-prob step no longer gets full-sequence log-probs and slices them itself."""
    if verl.__version__ not in VERL_PROVEN:
        raise RuntimeError(f"verl_arm: proven on verl {', '.join(VERL_PROVEN)}, found {verl.__version__}: install "
                           f"integrations/requirements-verl.txt, or run integrations/tests on it and add it to "
                           f"verl_arm.VERL_PROVEN")
    from verl.trainer.ppo.v1 import trainer_base
    try:
        old_step = inspect.getsource(trainer_base.PPOTrainer._compute_old_log_prob)
        adv_step = inspect.getsource(trainer_base.PPOTrainer._compute_advantage)
    except (OSError, TypeError) as e:
        raise RuntimeError(f"verl_arm: cannot read verl's v1 trainer source to check its layout ({e})") from None
    layout = ['response_from_nested(data.pop("log_probs"), data["response_mask"])' in old_step,
              "compute_advantage_for_multi_trajectories(" in adv_step,
              all(hasattr(trainer_base, name) for name in ("tq", "compute_advantage_for_multi_trajectories"))]
    if not all(layout):
        raise RuntimeError("verl_arm: this verl's v1 trainer no longer slices the actor's full-sequence log_probs in "
                           "_compute_old_log_prob (or computes advantages elsewhere): c(q) cannot be read there")


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


def needs_prompt_conf(config) -> bool:
    """Whether a run with this (full) verl config needs c(q): adv_estimator=arm with shift_center=prompt."""
    return config.algorithm.adv_estimator == "arm" and arm_settings(config.algorithm)["shift_center"] == "prompt"


def check_config(config) -> None:
    """Refuse, in one line naming the setting, what would give the estimator no c(q) (a full verl config)."""
    if config.algorithm.adv_estimator != "arm":
        return
    arm_settings(config.algorithm)  # unknown keys fail here, before any worker starts
    mode = config.trainer.v1.get("trainer_mode", "sync") if "v1" in config.trainer else "sync"
    if mode != "sync":
        raise ValueError(f"verl_arm: trainer.v1.trainer_mode={mode} is not hooked (ARM gets its inputs only in "
                         f"mode 'sync'): set trainer.v1.trainer_mode=sync")
    correction = config.algorithm.get("rollout_correction", None)
    if needs_prompt_conf(config) and correction and correction.get("bypass_mode", False):
        raise ValueError("verl_arm: algorithm.rollout_correction.bypass_mode=true skips the actor's log-prob pass "
                         "that gives c(q): set it to false, or algorithm.arm.shift_center=correct-mean")


def as_jagged(x: torch.Tensor) -> torch.Tensor:
    """A per-row field as a jagged (B, j) tensor: verl stacks rows of equal length into a dense (B, L) one."""
    return x if x.is_nested else torch.nested.as_nested_tensor(list(x), layout=torch.jagged)


def rows_by_uid(index: np.ndarray) -> list[list[int]]:
    """The row numbers of each group (rows sharing a uid), in order of first appearance."""
    groups = defaultdict(list)
    for i, uid in enumerate(index):
        groups[uid].append(i)
    return list(groups.values())


def prompt_conf_from_log_probs(log_probs: torch.Tensor, prompt_lens: torch.Tensor, response_lens: torch.Tensor,
                               index: np.ndarray) -> torch.Tensor:
    """METHOD.md definition 3 from verl's actor output: c(q) (B,), one value per uid.
    log_probs: a jagged (B, prompt + response) tensor, verl's "log_probs" before the trainer slices it:
    position j holds log pi(token j+1 | tokens <= j), so a prompt of n tokens has its tokens 2..n at
    positions 0..n-2 (verl's response_from_nested takes the response from the same layout).
    prompt_lens, response_lens (B,). A group's c(q) is the mean of its rows' (see the module's note)."""
    log_probs = as_jagged(log_probs)
    values, offsets = log_probs.values(), log_probs.offsets()
    row_lens = offsets.diff()
    if not torch.equal(row_lens.cpu(), (prompt_lens + response_lens).cpu()):
        raise RuntimeError("verl_arm: the actor's log_probs do not cover prompt + response (this verl slices them "
                           "elsewhere): c(q) cannot be read from them")
    n_pred = (prompt_lens - 1).clamp(min=0)  # (B,) prompt tokens that have a prediction: 2..n
    pos = torch.arange(int(n_pred.max().item()) if len(n_pred) else 0)[None]  # (1, Tq)
    mask = pos < n_pred[:, None]  # (B, Tq)
    gather = (offsets[:-1, None] + pos).clamp(max=max(len(values) - 1, 0))  # (B, Tq) into the flat values
    prompt_lp = torch.where(mask, values[gather].float(), 0.0)  # (B, Tq)
    row_conf = arm.prompt_confidence(prompt_lp, mask)  # (B,) c(q) of each row's prompt, definition 3
    conf = torch.empty_like(row_conf)
    for rows in rows_by_uid(index):
        conf[rows] = row_conf[rows].mean()  # the group's c(q): the same value on every row of the uid
    return conf


def arm_advantages_by_uid(scores: torch.Tensor, c_q: torch.Tensor | None, c_o: torch.Tensor, index: np.ndarray, *,
                          alpha: float, all_correct: str = "arm", shift_rows: str = "group",
                          shift_center: str = "prompt", scale: str = "std") -> tuple[torch.Tensor, torch.Tensor]:
    """arm.arm_advantages over groups of rows sharing a uid (any order, any group size).
    scores (B,), c_q (B,) (the row's prompt; a group's first row is read) or None, c_o (B,) ->
    (A~ (B,), shift (B,)) where shift = arm.arm_advantages - arm.grpo_advantages: alpha (c(q) - c(o|q))
    on the rows ARM touches."""
    adv, shift = torch.zeros(len(scores)), torch.zeros(len(scores))
    for rows in rows_by_uid(index):
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
        raise ValueError("verl_arm: the 'arm' estimator needs old_log_probs, which verl hands only to "
                         "ARMPPOTrainerSync: run verl's v1 sync trainer with verl_arm.setup as Ray's setup hook")
    if s["shift_center"] == "prompt" and prompt_conf is None:
        raise ValueError(f"verl_arm: shift_center='prompt' needs c(q) ({PROMPT_CONF}), which ARMPPOTrainerSync "
                         f"computes in its old-log-prob step: train with it, or set algorithm.arm.shift_center="
                         f"correct-mean")
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
    if prompt_conf is not None:
        stats["arm/conf_q_mean"] = prompt_conf.float().mean().item()
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
                     norm_adv_by_std_in_grpo=True, config=None, metrics: dict | None = None,
                     prompt_conf: torch.Tensor | None = None):
    """verl's compute_advantage_for_multi_trajectories for adv_estimator "arm": the estimator gets the
    batch's old_log_probs and c(q): prompt_conf (B,) in data's row order, else the batch field
    arm_prompt_conf when there is one. data: a verl DataProto."""
    b = data.batch
    several = [k for k in (batch_keys or []) if not str(k).endswith("_0")]  # verl's keys: {uid}_{session}_{output}
    if several:
        raise ValueError(f"verl_arm: an agent loop gave a session several outputs (key {several[0]}); verl's grpo "
                         f"then scores each session's last one, and ARM does not handle that: use one output each")
    if prompt_conf is None and PROMPT_CONF in b.keys():
        prompt_conf = b[PROMPT_CONF]
    if prompt_conf is not None and len(prompt_conf) != len(b):
        raise RuntimeError(f"verl_arm: {len(prompt_conf)} c(q) values for a batch of {len(b)} rows")
    out, stats = arm_outcome_advantage(b["token_level_rewards"], b["response_mask"], data.non_tensor_batch["uid"],
                                       b["old_log_probs"], prompt_conf, config, norm_adv_by_std_in_grpo)
    b["advantages"], b["returns"] = out, out
    if metrics is not None:
        metrics.update(stats)
    return data


def trainer_class():
    """ARMPPOTrainerSync, built on first use (verl's v1 trainer imports TransferQueue and Ray), after
    check_verl()."""
    check_verl()
    from tensordict import TensorDict
    from verl.trainer.ppo.v1 import trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    class ARMPPOTrainerSync(PPOTrainerSync):
        """verl's sync trainer; with adv_estimator=arm its old-log-prob step also stores c(q) and its
        advantage step hands ARM its inputs."""

        def __init__(self, config):
            check_config(config)
            super().__init__(config)

        def _compute_old_log_prob(self, batch, metrics):
            batch = super()._compute_old_log_prob(batch, metrics)
            if not needs_prompt_conf(self.config):
                return batch
            # verl's step has just cut the actor's full-sequence "log_probs" to old_log_probs; the field
            # itself still holds prompt + response until the reference pass writes over it: read c(q) now
            tq = trainer_base.tq
            data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                   select_fields=["log_probs", "prompts", "response_mask", "uid"])
            prompt_lens = as_jagged(data["prompts"]).offsets().diff()  # (B,)
            response_lens = as_jagged(data["response_mask"]).offsets().diff()  # (B,) as response_from_nested reads them
            uid = np.array(list(data["uid"]), dtype=object)  # a list of str (tensordict's LinkedList)
            conf = prompt_conf_from_log_probs(data["log_probs"], prompt_lens, response_lens, uid)  # (B,)
            tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                            fields=TensorDict({PROMPT_CONF: conf}, batch_size=len(batch)))
            return batch

        def _compute_advantage(self, batch, metrics):
            if self.config.algorithm.adv_estimator != "arm":
                return super()._compute_advantage(batch, metrics)
            prompt_conf = None  # c(q) in the row order of the keys, the order verl's step fetches its fields in
            if needs_prompt_conf(self.config):
                prompt_conf = trainer_base.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                                           select_fields=[PROMPT_CONF])[PROMPT_CONF]
            # verl's step fetches old_log_probs but would not pass them on: for this call, ours does
            original = trainer_base.compute_advantage_for_multi_trajectories
            trainer_base.compute_advantage_for_multi_trajectories = (
                lambda data, **kw: arm_compute_step(data, **kw, metrics=metrics, prompt_conf=prompt_conf))
            try:
                return super()._compute_advantage(batch, metrics)
            finally:
                trainer_base.compute_advantage_for_multi_trajectories = original

    return ARMPPOTrainerSync


def refusing_class(base: type, mode: str) -> type:
    """verl's trainer class for another mode, refusing adv_estimator=arm at construction (check_config)."""

    def __init__(self, config):
        check_config(config)
        base.__init__(self, config)

    return type(f"ARMRefuses{base.__name__}", (base,), {"__init__": __init__, "__doc__": f"{mode}: no ARM"})


def setup() -> None:
    """Ray's worker_process_setup_hook: import this module (registers "arm"), check verl's version and
    layout, make verl's "sync" trainer mode build ARMPPOTrainerSync, and its other modes refuse "arm"."""
    from verl.trainer.ppo.v1 import trainer_base
    registry = trainer_base.TRAINER_REGISTRY
    if getattr(registry.get("sync"), "__name__", "") != "ARMPPOTrainerSync":
        registry["sync"] = trainer_class()
    for mode, cls in list(registry.items()):
        if mode != "sync" and not cls.__name__.startswith("ARMRefuses"):
            registry[mode] = refusing_class(cls, mode)
