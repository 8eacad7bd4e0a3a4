"""Peak memory and time of one training step, per memory setting, on a random model of a real shape.
Not a test (tests/test_memory_bench.py runs the --tiny dry run).

Settings (each in a fresh process, one after the other, so that no peak carries over):
  full-logits         --no-chunk-logprobs: logits at every position, a float32 log-softmax of the
                      response part, a float32 copy for the entropy (the path before issue 21)
  chunked             the default: hidden states, the LM head only at response tokens, chunk by chunk
  chunked+checkpoint  the default plus --grad-checkpoint (each decoder layer recomputed in the backward)

Peak memory: on CUDA, torch.cuda.max_memory_allocated over the step(s); on CPU, the child process's
peak resident memory (VmHWM of /proc/self/status; ru_maxrss elsewhere), which includes Python, torch
and the model (`base`: the resident memory just before the first step). Times: the rollout and the
update of the last step (the update is where the settings differ), and `fwd`: one no-grad forward of
the decoder layers over the same micro-batches, which is what checkpointing adds to the update.

    python bench/memory.py                      # the issue's CPU setup: random Qwen2, vocab 151936, hidden 128,
                                                #   2 layers, tied; 4 prompts x 8, 256 new tokens, micro-batch 8
    python bench/memory.py --size 0.5b --device cuda --prompts-per-step 32 --max-new-tokens 1024 --micro-batch 4
    python bench/memory.py --tiny               # the dry run: tiny shapes, a few seconds
    python bench/memory.py --vocab 32000 --hidden 512 --layers 8    # any shape; any train.py flag passes through

The model is saved once (random weights, Hugging Face layout, a byte-level BPE tokenizer far
smaller than the vocabulary: the ids past it decode to nothing) in a temporary folder, with a
JSONL of GSM8K-style problems; every child loads it as train.py does (float32 weights, bf16
autocast on CUDA). A random model of a large vocabulary never samples EOS, so every response
runs to --max-new-tokens: the step's shapes are the same in every setting.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before bench/: `sampler` is the root's sampler.py
import config  # noqa: E402
import train  # noqa: E402
from config import resolve_device  # noqa: E402
from data import chat_eos_ids, load_problems, take_batch  # noqa: E402
from bench.gpu_check import QWEN, SIZES as QWEN_SIZES, make_tokenizer  # noqa: E402
from hf import load_model, load_tokenizer, save_model  # noqa: E402
from model import ModelConfig, Transformer  # noqa: E402

SIZES = {"cpu": dict(QWEN, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
         "0.5b": QWEN_SIZES["0.5b"], "1.5b": QWEN_SIZES["1.5b"], "tiny": QWEN_SIZES["tiny"]}
SETTINGS = {"full-logits": ["--no-chunk-logprobs"], "chunked": [], "chunked+checkpoint": ["--grad-checkpoint"]}
SHAPE_FLAGS = {"vocab": "vocab_size", "hidden": "hidden_size", "intermediate": "intermediate_size",
               "layers": "num_hidden_layers", "heads": "num_attention_heads", "kv_heads": "num_key_value_heads"}
RUN = ["--prompts-per-step", "4", "--group-size", "8", "--max-new-tokens", "256", "--micro-batch", "8"]
TINY_RUN = ["--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "6", "--micro-batch", "2"]
PROBLEMS = ["Tom has {a} apples and buys {b} more. How many apples does he have?",
            "A train travels {a} miles per hour for {b} hours. How far does it go?"]


def build(shape: dict, folder: Path) -> tuple[Path, Path, int]:
    """A random model of `shape` and a problems file in `folder`; (model dir, data file, parameters)."""
    tok = make_tokenizer()
    cfg = ModelConfig(eos_token_id=tok.token_to_id("<|endoftext|>"), **shape)
    torch.manual_seed(0)
    model = Transformer(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    save_model(model, folder / "model", tok)
    rows = [{"prompt": PROBLEMS[i % 2].format(a=10 + i, b=3 + i) + " Answer:", "answer": str(13 + 2 * i)}
            for i in range(64)]
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder / "model", folder / "data.jsonl", n_params


def peak_rss_bytes() -> int:
    """This process's peak resident memory."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child(flags: list[str], steps: int) -> dict:
    """One setting, in this (fresh) process: load as train.py does, run `steps` training steps, measure."""
    cfg = config.parse_command_line(flags + ["--eval-prompts", "0", "--save-every", "0"])[0]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg)
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(cfg.model, device=device, dtype=torch.float32)
    eos_ids = chat_eos_ids(model, tokenizer, cfg)
    problems = load_problems(cfg)[0]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else rss_bytes()
    for step in range(1, steps + 1):
        batch = take_batch(problems, (step - 1) * cfg.prompts_per_step, cfg.prompts_per_step, cfg.seed)
        m = train.train_step(model, None, opt, tokenizer, batch, cfg, gen, eos_ids, step)
    peak = torch.cuda.max_memory_allocated(device) if cuda else peak_rss_bytes()
    reserved = torch.cuda.max_memory_reserved(device) if cuda else None
    # one no-grad forward of the decoder layers over the update's micro-batches (what checkpointing repeats)
    ids = torch.randint(3, model.config.vocab_size, (cfg.prompts_per_step * cfg.group_size,
                                                     cfg.max_new_tokens + 32), device=device)
    t0 = time.perf_counter()
    with torch.no_grad(), config.autocast(cfg, device):
        for s in range(0, ids.shape[0], cfg.micro_batch):
            model(ids[s:s + cfg.micro_batch], hidden_states=True)
    if cuda:
        torch.cuda.synchronize()
    return {"peak": peak, "base": base, "reserved": reserved, "t_rollout": m["t_rollout"], "t_update": m["t_update"],
            "t_fwd": time.perf_counter() - t0, "response_len": m["response_len"], "entropy": m["entropy"],
            "grad_norm": m["grad_norm"], "loss": m["loss"]}


def run_child(flags: list[str], steps: int) -> dict:
    """The same script in a fresh process, its last output line a JSON record."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(flags), "--steps", str(steps)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"setting {flags}: the child failed:\n{p.stderr.strip()[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def gb(x: float) -> str:
    return f"{x / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="cpu", choices=list(SIZES), help="model shape (cpu: the issue's CPU setup)")
    for name, key in SHAPE_FLAGS.items():
        ap.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=f"override the shape's {key}")
    ap.add_argument("--tiny", action="store_true", help="the dry run: --size tiny, a tiny rollout")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of: {', '.join(SETTINGS)}")
    ap.add_argument("--steps", type=int, default=1, help="training steps per setting (times: the last one's)")
    ap.add_argument("--out", default=None, help="also write the results here as JSON")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one setting, print JSON
    args, rest = ap.parse_known_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child), args.steps)))
        return 0
    settings = args.settings.split(",")
    if any(s not in SETTINGS for s in settings):
        print(f"memory.py: --settings {args.settings}: each must be one of {', '.join(SETTINGS)}", file=sys.stderr)
        return 2
    if args.steps < 1:
        print(f"memory.py: --steps {args.steps}: must be >= 1", file=sys.stderr)
        return 2
    size = "tiny" if args.tiny else args.size
    shape = dict(SIZES[size], **{key: getattr(args, n) for n, key in SHAPE_FLAGS.items() if getattr(args, n)})
    run = (TINY_RUN if args.tiny else RUN) + rest  # flags given later win
    try:
        config.parse_command_line(run + ["--eval-prompts", "0"])  # a bad flag: one line, before anything is built
    except config.ConfigError as e:
        print(f"memory.py: {config.named_by_source(e)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        model_dir, data, n_params = build(shape, Path(tmp))
        flags = ["--model", str(model_dir), "--data", str(data), "--threads", "1", *run]
        cfg = config.parse_command_line(flags + ["--eval-prompts", "0"])[0]
        device = resolve_device(cfg)
        what = "max_memory_allocated" if device.type == "cuda" else "peak RSS of the process"
        print(f"{size} shape {shape['vocab_size']} vocab, hidden {shape['hidden_size']}, {shape['num_hidden_layers']} "
              f"layers: {n_params / 1e6:.1f}M params; device {device}; {cfg.prompts_per_step} prompts x "
              f"{cfg.group_size}, {cfg.max_new_tokens} new tokens, micro-batch {cfg.micro_batch}; {args.steps} step(s)"
              f"; peak = {what}", flush=True)
        res = {}
        for s in settings:
            res[s] = run_child(flags + SETTINGS[s], args.steps)
            r = res[s]
            print(f"  {s}: peak {gb(r['peak'])} (base {gb(r['base'])}), rollout {r['t_rollout']:.2f} s, "
                  f"update {r['t_update']:.2f} s", flush=True)
    ref = res.get("full-logits")
    print("\n| setting | peak | peak - base | vs full-logits | update s | vs full-logits | layers' fwd s |")
    print("|---|---|---|---|---|---|---|")
    for s, r in res.items():
        ratio = f"{r['peak'] / ref['peak']:.2f}" if ref else "-"
        t_ratio = f"{r['t_update'] / ref['t_update']:.2f}" if ref else "-"
        print(f"| {s} | {gb(r['peak'])} | {gb(r['peak'] - r['base'])} | {ratio} | {r['t_update']:.2f} | {t_ratio} "
              f"| {r['t_fwd']:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"size": size, "shape": shape, "params": n_params, "device": str(device),
                                              "flags": run, "steps": args.steps, "peak_is": what,
                                              "settings": res}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
