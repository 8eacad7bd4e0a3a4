"""Time of one training step by stage (rollout, reward, confidences, update), GRPO vs ARM.

Not a test. ARM's extra work is the prompt log-probs (read off the sampler's prefill, no extra
forward pass) and the confidence statistics; everything else is the same step. To compare like
with like, each repeat runs one GRPO step and one ARM step from the *same* policy, optimizer
state and sampling seed, so both sample the same tokens; the order alternates between repeats
and we report the median per stage (the machine may be shared: only the ratio is meaningful).

    python bench/train_step.py                      # the built-in toy, train.py's defaults
    python bench/train_step.py --repeats 10 --prompts-per-step 8 --group-size 16
    python bench/train_step.py --model DIR --data FILE.jsonl --device cuda   # any train.py flag
"""
import argparse
import copy
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import train  # noqa: E402
from config import resolve_device  # noqa: E402
from data import chat_eos_ids, load_problems, take_batch  # noqa: E402
from toys.tasks import toy_dir  # noqa: E402
from hf import load_model, load_tokenizer  # noqa: E402

STAGES = ("t_rollout", "t_reward", "t_conf", "t_update")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="GRPO/ARM step pairs to time (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed step pairs first")
    args, rest = ap.parse_known_args(argv)
    cfg = config.parse_command_line(rest + ["--eval-prompts", "0"])[0]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg)
    path = cfg.model or str(toy_dir())
    tokenizer = load_tokenizer(path)
    policy = load_model(path, device=device, dtype=torch.float32)
    eos_ids = chat_eos_ids(policy, tokenizer, cfg)
    problems = load_problems(cfg)[0]
    configs = {"grpo": config.make_config({**vars(cfg), "algo": "grpo", "alpha": None}),
               "arm": config.make_config({**vars(cfg), "algo": "arm"})}
    times = {a: {s: [] for s in STAGES} for a in configs}
    tokens = 0
    for rep in range(args.warmup + args.repeats):
        batch = take_batch(problems, rep * cfg.prompts_per_step, cfg.prompts_per_step, cfg.seed)
        order = ("grpo", "arm") if rep % 2 == 0 else ("arm", "grpo")
        for algo in order:
            c = configs[algo]
            model = copy.deepcopy(policy)  # the same starting point for both
            opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay, betas=(0.9, 0.99))
            gen = torch.Generator(device=device).manual_seed(cfg.seed + rep)  # the same samples for both
            m = train.train_step(model, None, opt, tokenizer, batch, c, gen, eos_ids, step=rep + 1)
            if rep >= args.warmup:
                for s in STAGES:
                    times[algo][s].append(m[s])
                tokens += m["response_len"] * cfg.prompts_per_step * cfg.group_size / 2
        policy = model  # walk on, so that later repeats see a (slightly) trained policy

    med = {a: {s: statistics.median(v) for s, v in t.items()} for a, t in times.items()}
    total = {a: sum(med[a].values()) for a in med}
    print(f"device {device}, threads {torch.get_num_threads()}, {cfg.prompts_per_step} prompts x {cfg.group_size} "
          f"responses, max {cfg.max_new_tokens} new tokens, {args.repeats} repeats (median seconds per step)")
    print(f"{'stage':<12}{'grpo':>10}{'arm':>10}{'arm-grpo':>11}")
    for s in STAGES:
        print(f"{s[2:]:<12}{med['grpo'][s]:>10.4f}{med['arm'][s]:>10.4f}{med['arm'][s] - med['grpo'][s]:>+11.4f}")
    print(f"{'step':<12}{total['grpo']:>10.4f}{total['arm']:>10.4f}{total['arm'] - total['grpo']:>+11.4f}")
    ratio = total["arm"] / total["grpo"]
    # the ARM-only work, measured per stage: confidences (c(q), arm shift) and the prefill's prompt log-probs
    print(f"ARM / GRPO step time: {ratio:.3f}  (extra {100 * (ratio - 1):+.1f}%; target within 5%)")
    print(f"response tokens per step: {tokens / args.repeats:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
