"""What a comparison runs: the methods (GRPO, ARM as written, ARM's parts taken apart, the unlikeliness
baseline), the train.py settings every run shares, and the plan per regime. research/compare.py runs
them; research/mechanism.py measures the same methods' advantages. Every value here was fixed before
the runs that use it (research/results/PREDICTIONS.md).
"""
from __future__ import annotations

ALPHA = 1.0  # every ARM variant: the same re-weighting strength (fixed before any run)
METHODS = {  # name -> (shift_rows, shift_center); grpo is alpha = 0; unlikely is the baseline (--algo unlikely)
    "grpo": None,
    "unlikely": None,
    "arm": ("group", "prompt"),
    "arm-correct-only": ("correct", "prompt"),
    "arm-centred": ("group", "correct-mean"),
    "arm-centred-correct-only": ("correct", "correct-mean"),
}
# the default methods: the five above at ALPHA, and the zero-sum re-weighting at alpha 10, where its
# shifts are as large as GRPO's advantages (c(o|q) spreads by only 0.04-0.12 among a group's
# correct answers); fixed, with its reason, before any run (research/results/PREDICTIONS.md)
DEFAULT_METHODS = tuple(m for m in METHODS if m != "unlikely") + ("arm-centred-correct-only@10",)
RANK_PENALTY = 0.25  # the unlikeliness reward's beta (fixed before any run; research/results/PREDICTIONS.md addendum 3)
# hidden-type: the paper's form at alpha 0.3, 1 and 3, the three ablations, and the baseline with the same aim
HIDDEN_METHODS = ("grpo", "arm", "arm-correct-only", "arm-centred", "arm-centred-correct-only", "arm@0.3", "arm@3",
                  "unlikely")
SEEDS = 12  # training seeds 0 .. SEEDS-1, the same for every method and regime
RUN = dict(  # train.py settings shared by every run (any train.py flag overrides them)
    steps=100,  # training steps per run
    prompts_per_step=16,  # P prompts per step
    group_size=8,  # G responses per prompt
    eval_prompts=64,  # held-out prompts
    eval_n=32,  # samples per held-out prompt: pass@k up to k = 32
    save_every=0,  # one checkpoint at the end of each run
    keep_checkpoints=1,
)
QUICK = dict(steps=15, prompts_per_step=8, eval_prompts=16, eval_n=16)  # --quick: 1 seed, a first look
# per regime: the default methods and the settings that differ from RUN. hidden-type's steps come from
# its GRPO pilot (research/results/PREDICTIONS.md addendum 3); it is scored on 128 held-out prompts, not 64.
# shown-type, the control, runs GRPO only (by default), with the same settings. hidden-type-r20 (R 20 %
# of problems, not 15 %): the design research/results/PREDICTIONS.md addendum 5 part 2 registered, four
# methods for 400 steps, evaluated every 100 (so a one-cell rerun gives the stored cell).
HIDDEN_RUN = dict(steps=200, eval_prompts=128)  # 200: the pilot met its gates at step 200 (attempt 4)
R20_METHODS = ("grpo", "arm", "arm-centred", "unlikely")
R20_RUN = dict(steps=400, eval_prompts=128, eval_every=100)
PLANS = {"original": (DEFAULT_METHODS, {}), "equal-paths": (DEFAULT_METHODS, {}),
         "hidden-type": (HIDDEN_METHODS, HIDDEN_RUN), "shown-type": (("grpo",), HIDDEN_RUN),
         "hidden-type-r20": (R20_METHODS, R20_RUN)}
DEFAULT_REGIMES = ("original", "equal-paths")  # the two stored 6-method comparisons; --regime hidden-type for the third


def method_name(alpha: float) -> str:
    """The name of a sweep point (--alphas) of the paper's form: arm@0.3."""
    return f"arm@{alpha:g}"


def method_values(method: str, alpha: float) -> dict:
    """The train.py config keys that make a run this method."""
    name, at, a = method.partition("@")
    if name == "grpo":
        return {"algo": "grpo"}
    if name == "unlikely":
        return {"algo": "unlikely", "rank_penalty": float(a) if at else RANK_PENALTY}
    rows, center = METHODS[name]
    return {"algo": "arm", "alpha": float(a) if at else alpha, "shift_rows": rows, "shift_center": center}
