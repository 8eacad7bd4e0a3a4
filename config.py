"""A run's settings: the Config dataclass, its validation, and the flags and --config file that fill it.

Flags, --config JSON and a resumed run's config.json all land in one Config, validated in full
before any work; every mistake a user can make is one line naming the key. Each field is written
once, with its default, its --help text and group and (for a string with fixed values) its choices:
adding a setting is adding one line to Config. --help shows each flag's TRL and verl name beside it.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import textwrap
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from checkpoint import find_checkpoint
from hf import pick_template

DEFAULT_ALPHA = 1.0  # ARM strength when --algo arm and no --alpha is given
TEMPLATES = ("plain", "qwen-chat", "llama3-chat", "chatml")  # prompt templates, written out in data.py
# The groups of --help; each Config field names its own.
MODEL, ALGO, SAMPLING, EVAL, SPEED, RUN = ("model and data", "GRPO / ARM", "sampling", "evaluation",
                                           "memory and speed", "run folder")
HELP_GROUPS = (MODEL, ALGO, SAMPLING, EVAL, SPEED, RUN)  # in the order --help shows them


def opt(default, help: str, choices: tuple | None = None, *, group: str):
    """One Config field: its default, its --help text and group and, for a string, the values it may take."""
    return field(default=default, metadata={"help": help, "group": group, **({"choices": choices} if choices else {})})


@dataclass
class Config:
    # model and data
    model: str = opt("", "Hugging Face folder; '' = the built-in toy of --toy", group=MODEL)
    data: str = opt("", "training JSONL (GSM8K, MATH or prompt/answer); '' = the toy's generator", group=MODEL)
    toy: str = opt("original", "built-in toy regime (model in toys/<regime>/): original | equal-paths | hidden-type "
                               "| shown-type (hidden-type's control) | hidden-type-r20 (hidden-type with a fifth "
                               "of the problems R)",
                   ("original", "equal-paths", "hidden-type", "shown-type", "hidden-type-r20"), group=MODEL)
    eval_data: str = opt("", "held-out JSONL; '' = toy held-out split, or the first --eval-prompts lines of --data",
                         group=MODEL)
    template: str = opt("plain", "plain (text as is) | qwen-chat | llama3-chat | chatml (chat markers written "
                                 "out, boxed instruction) | auto (picked from the tokenizer's special tokens and "
                                 "saved as the name it picked)", TEMPLATES + ("auto",), group=MODEL)
    strict: bool = opt(False, "refuse a data file with any malformed line instead of skipping the line", group=MODEL)
    # the algorithm (METHOD.md)
    algo: str = opt("arm", "arm | grpo (= arm with alpha 0) | unlikely (baseline: the unlikeliness reward, "
                           "arm.unlikeliness_advantages)", ("arm", "grpo", "unlikely"), group=ALGO)
    alpha: float | None = opt(None, f"ARM strength; None = {DEFAULT_ALPHA} for arm, 0 for grpo", group=ALGO)
    low_frac: float = opt(0.2, "fraction of lowest-probability tokens in c(o|q)", group=ALGO)
    adv_scale: str = opt("std", "std (GRPO) | none (Dr.GRPO)", ("std", "none"), group=ALGO)
    all_correct: str = opt("arm", "arm: ARM shift also in all-correct groups | grpo: not there", ("arm", "grpo"),
                           group=ALGO)
    shift_rows: str = opt("group", "who gets ARM's shift: group (paper: every response of a group with a correct "
                                   "answer) | correct (ablation: correct responses only)", ("group", "correct"),
                          group=ALGO)
    shift_center: str = opt("prompt", "what c(o|q) is compared with: prompt (paper: c(q)) | correct-mean (ablation: "
                                      "the mean c(o|q) of the group's correct responses)", ("prompt", "correct-mean"),
                            group=ALGO)
    rank_penalty: float = opt(0.25, "--algo unlikely: a correct response's reward is scaled by "
                                    "1 - rank_penalty * rank / G (rank by likelihood in its group)", group=ALGO)
    loss_agg: str = opt("token-mean", "token-mean (DAPO) | seq-mean-token-mean (GRPO) | constant (Dr.GRPO)",
                        ("token-mean", "seq-mean-token-mean", "constant"), group=ALGO)
    eps_low: float = opt(0.2, "clip ratio below at 1 - eps_low", group=ALGO)
    eps_high: float = opt(0.28, "clip ratio above at 1 + eps_high", group=ALGO)
    kl_coef: float = opt(0.0, "k3 KL to the frozen initial model; 0 = no reference model loaded", group=ALGO)
    # rollout
    steps: int = opt(200, "training steps (one rollout batch each)", group=SAMPLING)
    prompts_per_step: int = opt(16, "P distinct prompts per step", group=SAMPLING)
    group_size: int = opt(8, "G responses per prompt", group=SAMPLING)
    max_new_tokens: int = opt(48, "longest response; longer ones are cut and counted as truncated", group=SAMPLING)
    temperature: float = opt(1.0, "sampling temperature (training log-probs use the same one)", group=SAMPLING)
    top_p: float = opt(1.0, "nucleus sampling (log-probs stay those of the full distribution)", group=SAMPLING)
    cuda_graph: bool = opt(False, "on CUDA, replay each rollout decode step as a CUDA graph (fixed shapes; "
                                  "the same samples up to rounding); no effect on CPU", group=SPEED)
    # optimisation
    lr: float = opt(2e-4, "AdamW peak learning rate", group=ALGO)
    weight_decay: float = opt(0.0, "AdamW weight decay", group=ALGO)
    warmup_steps: int = opt(5, "linear warm-up of the learning rate, then constant", group=ALGO)
    grad_clip: float = opt(1.0, "max global gradient norm (0 = no clipping)", group=ALGO)
    epochs: int = opt(1, "PPO epochs over each rollout batch", group=ALGO)
    mini_batches: int = opt(1, "optimizer steps per epoch (the rollout is split into this many)", group=ALGO)
    micro_batch: int = opt(32, "rows per forward/backward pass: bounds memory, not the result; "
                               "more than the rollout's P x G rows is clamped to P x G", group=SPEED)
    chunk_logprobs: bool = opt(True, "log-probs and entropy from the LM head at the response tokens only, a "
                                     "chunk at a time (same numbers; --no-chunk-logprobs: logits at every "
                                     "position, kept as bench/memory.py's comparison)", group=SPEED)
    grad_checkpoint: bool = opt(False, "recompute each decoder layer's activations in the backward pass "
                                       "(less memory, about one more forward pass of time)", group=SPEED)
    # evaluation
    eval_every: int = opt(0, "evaluate every N steps (0 = only before and after training)", group=EVAL)
    eval_prompts: int = opt(128, "held-out prompts per evaluation (0 = no evaluation); without --eval-data, the "
                                 "first records of --data, or half of them if it has no more than this", group=EVAL)
    eval_n: int = opt(32, "samples per held-out prompt (pass@k for k = 1, 2, 4, ..., n)", group=EVAL)
    eval_seed: int = opt(1234, "fixes the held-out prompts and the eval samples (same for every run)", group=EVAL)
    eval_before: bool = opt(True, "evaluate the initial model before training", group=EVAL)
    # run
    seed: int = opt(0, "data order, sampling, everything", group=RUN)
    save_every: int = opt(50, "checkpoint every N steps (0 = only at the end / on Ctrl-C)", group=RUN)
    keep_checkpoints: int = opt(2, "checkpoints kept (0 = all)", group=RUN)
    resume: str = opt("", "run folder or checkpoint folder to continue from", group=RUN)
    out: str = opt("", "output folder; '' = runs/<timestamp>", group=RUN)
    device: str = opt("auto", "auto | cpu | cuda | cuda:N", group=SPEED)
    dtype: str = opt("auto", "auto (bf16 autocast on CUDA, float32 on CPU) | float32 | bfloat16",
                     ("auto", "float32", "bfloat16"), group=SPEED)
    threads: int = opt(1, "CPU threads for torch; 1 suits the toy's tiny matrices and shared machines "
                          "(0 = torch's default)", group=SPEED)


CHOICES = {f.name: f.metadata["choices"] for f in dataclasses.fields(Config) if "choices" in f.metadata}


class ConfigError(ValueError):
    """A configuration a user can get wrong; the message is one line naming the key. `key` and
    `reason` let parse_command_line name the flag or the file the value came from instead."""

    def __init__(self, message: str, key: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.key, self.reason = key, reason


def key_error(key: str, reason: str) -> ConfigError:
    return ConfigError(f"{key}: {reason}", key, reason)


def _field_types() -> dict[str, tuple[type, bool]]:
    """name -> (base type, None allowed), read from the dataclass annotations."""
    out = {}
    for f in dataclasses.fields(Config):
        t = str(f.type)
        base = {"int": int, "float": float, "str": str, "bool": bool}[t.split(" ")[0]]
        out[f.name] = (base, "None" in t)
    return out


def _coerce(key: str, value, base: type, nullable: bool):
    """Check one value's type (JSON or argparse); ints are accepted for floats, nothing else is."""
    if value is None and nullable:
        return None
    ok = (isinstance(value, base) and not (base is int and isinstance(value, bool))) or (
        base is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise key_error(key, f"expected {base.__name__}, got {type(value).__name__} {value!r}")
    return float(value) if base is float else value


def make_config(values: dict) -> Config:
    """Config from a dict (a --config file, flags, a checkpoint's config); validated in full."""
    types = _field_types()
    kw = {}
    for key, value in values.items():
        k = key.replace("-", "_")
        if k not in types:
            raise key_error(key, f"unknown key (known: {', '.join(types)})")
        kw[k] = _coerce(key, value, *types[k])
    cfg = Config(**kw)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Every impossible value or combination, as one line naming the key. Resolves what is left to
    the program: alpha (None), template (auto) and a micro_batch larger than the rollout."""
    def bad(key, msg):
        raise key_error(key, msg)

    for k, options in CHOICES.items():
        if getattr(cfg, k) not in options:
            bad(k, f"{getattr(cfg, k)!r} is not one of {', '.join(options)}")
    if cfg.algo in ("grpo", "unlikely"):
        if cfg.alpha not in (None, 0.0):
            bad("alpha", (f"--algo grpo is ARM with alpha = 0; got alpha {cfg.alpha} (use --algo arm)" if cfg.algo == "grpo" else
                        f"--algo unlikely has no ARM shift (alpha = 0); got alpha {cfg.alpha}"))
        cfg.alpha = 0.0
    if cfg.alpha is None:  # --algo arm without --alpha
        cfg.alpha = DEFAULT_ALPHA
    if not (math.isfinite(cfg.rank_penalty) and 0.0 <= cfg.rank_penalty <= 1.0):
        bad("rank_penalty", f"must be in [0, 1], got {cfg.rank_penalty}")
    for k in ("steps", "eval_every", "eval_prompts", "save_every", "keep_checkpoints", "warmup_steps", "threads"):
        if getattr(cfg, k) < 0:
            bad(k, f"must be >= 0, got {getattr(cfg, k)}")
    for k in ("prompts_per_step", "max_new_tokens", "epochs", "mini_batches", "micro_batch", "eval_n"):
        if getattr(cfg, k) < 1:
            bad(k, f"must be >= 1, got {getattr(cfg, k)}")
    if cfg.group_size < 2:
        bad("group_size", f"GRPO compares responses within a group: need >= 2, got {cfg.group_size}")
    if not cfg.temperature > 0:
        bad("temperature", f"must be > 0 for policy-gradient training, got {cfg.temperature}")
    if not 0 < cfg.top_p <= 1:
        bad("top_p", f"must be in (0, 1], got {cfg.top_p}")
    if not 0 < cfg.low_frac <= 1:
        bad("low_frac", f"must be in (0, 1], got {cfg.low_frac}")
    if not 0 <= cfg.eps_low < 1:
        bad("eps_low", f"must be in [0, 1), got {cfg.eps_low}")
    for k in ("eps_high", "kl_coef", "lr", "weight_decay", "grad_clip"):
        if not getattr(cfg, k) >= 0 or not math.isfinite(getattr(cfg, k)):
            bad(k, f"must be a finite number >= 0, got {getattr(cfg, k)}")
    if not math.isfinite(cfg.alpha):
        bad("alpha", f"must be finite, got {cfg.alpha}")
    rows = cfg.prompts_per_step * cfg.group_size
    cfg.micro_batch = min(cfg.micro_batch, rows)  # a bound on memory: more rows than the rollout has is no error
    if rows % cfg.mini_batches:
        bad("mini_batches", f"the rollout of {rows} rows does not split into {cfg.mini_batches} equal mini-batches")
    if cfg.device != "auto" and not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
        bad("device", f"{cfg.device!r} is not auto, cpu, cuda or cuda:N")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        bad("device", f"{cfg.device!r} asked for, but torch sees no CUDA device")
    if cfg.dtype == "bfloat16" and resolve_device(cfg).type != "cuda":
        bad("dtype", "bfloat16 autocast is for CUDA; on CPU use float32")
    for k in ("model", "resume"):
        if getattr(cfg, k) and not Path(getattr(cfg, k)).is_dir():
            bad(k, f"{getattr(cfg, k)}: folder not found")
    for k in ("data", "eval_data"):
        if getattr(cfg, k) and not Path(getattr(cfg, k)).is_file():
            bad(k, f"{getattr(cfg, k)}: file not found")
    if cfg.template == "auto":
        cfg.template = pick_template(cfg.model)[0] if cfg.model else "plain"
    if cfg.template != "plain" and not cfg.model:
        bad("template", f"{cfg.template} needs a chat model (--model); the toy continues plain text")


# The same settings under the names TRL's GRPOConfig and verl's config use (None: no counterpart);
# --help shows them beside each flag, and integrations/README.md's flag table holds the same rows. Values
# listed after "=" are in the order of the flag's choices.
ENGINE_NAMES: dict[str, tuple[str | None, str | None]] = {
    "group_size": ("num_generations", "actor_rollout_ref.rollout.n"),
    "prompts_per_step": ("generation_batch_size / num_generations", "data.train_batch_size"),
    "max_new_tokens": ("max_completion_length", "data.max_response_length"),
    "temperature": ("temperature", "actor_rollout_ref.rollout.temperature"),
    "top_p": ("top_p", "actor_rollout_ref.rollout.top_p"),
    "steps": ("max_steps", "trainer.total_training_steps"),
    "lr": ("learning_rate", "actor_rollout_ref.actor.optim.lr"),
    "weight_decay": ("weight_decay", "actor_rollout_ref.actor.optim.weight_decay"),
    "warmup_steps": ("warmup_steps", "actor_rollout_ref.actor.optim.lr_warmup_steps"),
    "grad_clip": ("max_grad_norm", "actor_rollout_ref.actor.grad_clip"),
    "epochs": ("num_iterations", "actor_rollout_ref.actor.ppo_epochs"),
    "mini_batches": ("steps_per_generation / gradient_accumulation_steps", "data.train_batch_size / actor_rollout_ref.actor.ppo_mini_batch_size"),
    "micro_batch": ("per_device_train_batch_size", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"),
    "eps_low": ("epsilon", "actor_rollout_ref.actor.clip_ratio_low"),
    "eps_high": ("epsilon_high", "actor_rollout_ref.actor.clip_ratio_high"),
    "kl_coef": ("beta", "actor_rollout_ref.actor.kl_loss_coef (use_kl_loss=True, kl_loss_type=low_var_kl)"),
    "loss_agg": ("loss_type = dapo, grpo, dr_grpo",
                 "actor_rollout_ref.actor.loss_agg_mode = token-mean, seq-mean-token-mean, seq-mean-token-sum-norm"),
    "adv_scale": ("scale_rewards = group, none", "algorithm.norm_adv_by_std_in_grpo = True, False"),
    "alpha": ("alpha (integrations/trl_arm.py's ARMGRPOConfig)", "algorithm.arm.alpha (algorithm.adv_estimator=arm)"),
    "low_frac": ("low_frac (ARMGRPOConfig)", "algorithm.arm.low_frac"),
    "all_correct": ("all_correct (ARMGRPOConfig)", "algorithm.arm.all_correct"),
    "shift_rows": ("shift_rows (ARMGRPOConfig)", "algorithm.arm.shift_rows"),
    "shift_center": ("shift_center (ARMGRPOConfig)", "algorithm.arm.shift_center"),
    "save_every": ("save_steps", "trainer.save_freq"),
    "eval_every": ("eval_steps", "trainer.test_freq"),
    "seed": ("seed", None),
    "model": ("GRPOTrainer(model=...)", "actor_rollout_ref.model.path"),
    "data": ("GRPOTrainer(train_dataset=...)", "data.train_files"),
    "eval_data": ("GRPOTrainer(eval_dataset=...)", "data.val_files"),
    "out": ("output_dir", "trainer.default_local_dir"),
    "grad_checkpoint": ("gradient_checkpointing", "actor_rollout_ref.model.enable_gradient_checkpointing"),
}
# Where the meaning differs from TRL's or verl's; --help adds the note after the names.
ENGINE_NOTES = {
    "adv_scale": "Ours divides by the population std (eps 1e-6), TRL and verl by the sample std (eps 1e-4, 1e-6), "
                 "larger by sqrt(G/(G-1)), so their advantages are smaller.",
    "eps_high": "TRL's epsilon_high defaults to epsilon, a symmetric clip; ours to 0.28 (DAPO).",
    "kl_coef": "Ours and TRL's beta use the k3 estimator; verl's low_var_kl is k3 clipped to [-10, 10].",
    "prompts_per_step": "This counts prompts; TRL's batch sizes count completions.",
    "mini_batches": "This counts optimizer steps per rollout; verl's ppo_mini_batch_size is a size in prompts.",
}
# On --resume, the run's config.json is the truth. These settings only extend the run, say how often
# to evaluate or save, or where and how fast it runs, so a flag may change them; any other setting
# given with a different value is refused (it would change what the run trains).
RESUME_MAY_CHANGE = ("steps", "eval_every", "eval_n", "eval_before", "save_every", "keep_checkpoints", "micro_batch",
                     "chunk_logprobs", "grad_checkpoint", "device", "dtype", "threads", "cuda_graph", "strict",
                     "resume", "out")


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def engine_help(key: str) -> str:
    """The end of a flag's --help: ' [TRL: name | verl: name]' and, where the meaning differs, a note."""
    names = [f"{engine}: {name}" for engine, name in zip(("TRL", "verl"), ENGINE_NAMES.get(key, ())) if name]
    return (f" [{' | '.join(names)}]" if names else "") + (f" {ENGINE_NOTES[key]}" if key in ENGINE_NOTES else "")


def help_epilog() -> str:
    may = ", ".join(flag(k) for k in RESUME_MAY_CHANGE if k != "resume")
    resume = textwrap.fill(f"--resume RUN: the run's config.json is the truth. These flags may differ from it (they "
                           f"extend, observe or place the run): {may}. Any other flag given with a different value "
                           "is refused (start a new run instead).", 100, subsequent_indent="  ",
                           break_on_hyphens=False)
    return "\n".join([
        resume,
        "--out: a folder that already holds files is refused (use --resume, a new --out, or --overwrite).",
        "[TRL: ... | verl: ...] after a flag: the same setting in TRL's GRPOConfig and in verl's config.",
        "Exit codes: 0 done; 1 failure (e.g. a NaN loss; the last good checkpoint is named); 2 bad input (a flag,",
        "  a file, the data, the model, the run folder; one line names it); 130 interrupted (Ctrl-C during training",
        "  finishes the step and saves a checkpoint: continue with --resume).",
    ])


class FlagParser(argparse.ArgumentParser):
    """argparse, with each of its errors in one line (`train.py: error: --toy: ...`, exit 2, no usage block),
    and a negative number after a flag that takes a value read as that value: `--lr -1e-4` is `--lr=-1e-4`.
    (argparse reads a token that starts with '-' as a flag unless it looks like -1 or -0.5, so -1e-4 or
    -inf left the flag without its value.) research/compare.py parses train.py's flags with it too."""

    def parse_known_args(self, args=None, namespace=None):  # parse_args calls this
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(self.numbers_attached(args), namespace)

    def numbers_attached(self, argv: list[str]) -> list[str]:
        out = []
        for token in argv:
            if out and token.startswith("-") and is_number(token) and self.takes_one_value(out[-1]):
                out[-1] += "=" + token
            else:
                out.append(token)
        return out

    def takes_one_value(self, token: str) -> bool:
        """Whether token names a flag that takes one value, as argparse reads it: the flag itself,
        or the one flag it begins (`--kl` for --kl-coef)."""
        flags = self._option_string_actions  # argparse's own table: every flag string -> its action
        names = [token] if token in flags else [
            f for f in flags if self.allow_abbrev and token.startswith("--") and f.startswith(token)]
        return len(names) == 1 and flags[names[0]].nargs is None

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message.removeprefix('argument ')}\n")


def is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def one_of(choices: tuple[str, ...]):
    """argparse type of a flag with fixed values: a wrong value is named beside the valid ones."""
    def check(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from {', '.join(choices)})")
        return value
    return check


def build_parser() -> argparse.ArgumentParser:
    """One flag per Config field (--snake-case -> --kebab-case) in the field's group, with its help and default.
    Two flags are no setting of the run and are never read from a file: --config and --overwrite."""
    ap = FlagParser(
        prog="train.py", usage="%(prog)s [-h] [--FLAG VALUE ...]  (every flag is optional)",
        description="ARM-weighted GRPO (ProGRPO). No arguments: train the built-in toy on CPU.",
        epilog=help_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS)  # only flags the user gave override --config / --resume
    groups = {title: ap.add_argument_group(title) for title in HELP_GROUPS}
    types = _field_types()
    for f in dataclasses.fields(Config):
        base, _ = types[f.name]
        group = groups[f.metadata["group"]]
        help_ = f"{f.metadata['help']} (default: {f.default!r}){engine_help(f.name)}"
        if base is bool:
            group.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, help=help_)
        elif f.name in CHOICES:
            group.add_argument(flag(f.name), choices=CHOICES[f.name], type=one_of(CHOICES[f.name]), help=help_)
        else:
            group.add_argument(flag(f.name), type=base, help=help_, metavar=f.name.upper())
    groups[RUN].add_argument("--config", help="JSON file of config keys (as in a run's config.json); flags override it")
    groups[RUN].add_argument("--overwrite", action="store_true",
                             help="if --out already holds a run, delete it first (refused for the run being resumed)")
    return ap


def read_json_object(path: str | Path, what: str) -> dict:
    try:
        d = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what}: {path}: cannot read ({type(e).__name__})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{what}: {path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{what}: {path}: expected a JSON object")
    return d


def parse_command_line(argv: list[str] | None = None, log=print) -> tuple[Config, bool]:
    """(Config, overwrite). Flags > --config file > the resumed run's config.json > defaults. An invalid
    value is reported under the name the user gave it (named_by_source)."""
    given = vars(build_parser().parse_args(argv))
    overwrite = given.pop("overwrite", False)
    origin = {k.replace("-", "_"): flag(k.replace("-", "_")) for k in given}  # config key -> where it was set
    values = {}
    if "config" in given:
        path = given.pop("config")
        values.update(read_json_object(path, "--config"))
        origin = {**{k.replace("-", "_"): f"{path}: " for k in values}, **origin}
    values.pop("overwrite", None)  # only the command line may ask to delete a run
    resume = given.get("resume", values.get("resume", ""))
    if resume:
        ckpt = find_checkpoint(resume)
        saved = read_json_object(ckpt / "config.json", "--resume")
        saved.pop("out", None)  # a resumed run writes where its checkpoint lives, unless --out says otherwise
        origin = {**{k: f"{ckpt / 'config.json'}: " for k in saved}, **origin}
        user = {**values, **given}  # what the user asked for on top of the run's own settings
        values = {**saved, **values, "resume": resume}
    values.update(given)
    try:
        cfg = make_config(values)
        if resume:
            check_resume(cfg, saved, user, origin, resume)
    except ConfigError as e:
        raise named_by_source(e, origin) from None
    if values.get("template") == "auto" and cfg.model:
        log(f"--template auto: {cfg.template} ({pick_template(cfg.model)[1]})")
    return cfg, overwrite


def named_by_source(e: ConfigError, origin: dict[str, str] | None = None) -> ConfigError:
    """The same error under the name the user gave the setting: `--group-size (group_size): ...` for a
    flag (also for a setting left at its default: the flag is how to change it), `FILE: group_size: ...`
    for a key of a file. The result carries no key, so it is never renamed twice."""
    origin = origin or {}
    if e.key is None or e.reason is None or not (e.key in origin or e.key in _field_types()):
        return e
    where = origin.get(e.key, flag(e.key))
    return ConfigError(f"{where} ({e.key}): {e.reason}" if where.startswith("--") else f"{where}{e.key}: {e.reason}")


def check_resume(cfg: Config, saved: dict, user: dict, origin: dict, resume: str) -> None:
    """Refuse, in one line naming each, the settings the user gave that would change what the
    resumed run trains (everything but RESUME_MAY_CHANGE)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    changed = []
    for key in dict.fromkeys(k.replace("-", "_") for k in user):
        if key in RESUME_MAY_CHANGE or key not in defaults:
            continue
        was, now = saved.get(key, defaults[key]), getattr(cfg, key)
        if now != was:
            where = origin.get(key, "")
            name = f"{where.strip()} {now!r}" if where.startswith("--") else f"{where}{key} {now!r}"
            changed.append(f"{name} (the run has {was!r})")
    if changed:
        raise ConfigError(f"resume: {resume} was trained with other settings: {'; '.join(changed)}. "
                          f"On --resume only {', '.join(flag(k) for k in RESUME_MAY_CHANGE)} may change; "
                          "drop the others, or start a new run (--config with a new --out)")


def resolve_device(cfg: Config) -> torch.device:
    if cfg.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg.device)


def autocast(cfg: Config, device: torch.device):
    """bf16 autocast on CUDA (weights and optimizer stay float32); nothing on CPU."""
    if device.type == "cuda" and cfg.dtype in ("auto", "bfloat16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
