"""One prepared GPU check, run once on a lent GPU: logits against transformers, sampler speed and three
real-sized training steps, on random models of Qwen2.5's shapes. Not a test; the test suite runs the
CPU dry run (tests/test_gpu_check.py) so that it cannot rot.

    python bench/gpu_check.py --out gpu_check.json          # Qwen2.5-0.5B's shape: ~3 min on an H200
    python bench/gpu_check.py --sizes 0.5b,1.5b --budget-s 200
    python bench/gpu_check.py --device cpu --tiny           # the dry run, tiny shapes: a few seconds

Each part prints a line; --out gets the results as JSON, rewritten after every part (a run killed
at its time limit keeps what it finished). Exit code 1 if a check failed (named at the end).
  0 device   GPU name, torch, CUDA, transformers.
  1 build    a random model (initialised on the device; q/k/v biases and norm weights perturbed so that
             loading them matters), saved by save_model with a byte-level BPE tokenizer built here.
             The model's vocab (151936) is far larger than the tokenizer's: checks that decode_batch of
             ids past the tokenizer's vocab does not crash (train.rollout decodes every sampled id).
  2 logits   ours vs transformers on a left-padded batch (lengths 128, 100, 64, 17), real positions
             only, rel = ||a - b|| / ||b||. Checks:
               ours-fp32 vs hf-fp32                      <= 1e-4 (TF32 off; expect ~1e-6)
               ours-bf16 vs hf-fp32                      <= 1.5 x (hf-bf16 vs hf-fp32) + 1e-3
               ours-fp32 under bf16 autocast vs hf-fp32  the same bound (how train.py runs on CUDA)
               ours-bf16 vs hf-bf16                      <= max(2e-2, hf-bf16 vs hf-fp32)
             and prints the greedy next-token agreement of ours-bf16 and hf-bf16. Why the max: a random
             24-layer model amplifies one-ulp differences. On CPU, where both agree bit for bit, 0.5b's
             bf16 logits are 2.4e-2 from fp32, and one-ulp noise on the attention outputs alone moves
             them by 2.4e-2; on a GPU the two attention kernels round differently.
  3 sampler  an RL rollout's shape: batch 64, prompt 128, up to 512 new tokens, row lengths log-normal
             (median 128) and forced on both sides (bench/sampler.py). Useful tokens/s, best of
             --repeats after a short warm-up: ours in bf16, eager and CUDA graph; ours in float32 under
             bf16 autocast (the training configuration), eager and graph; transformers' generate, bf16.
             Checks: every row ends at its target length, on both sides.
  4 train    3 steps of train.main at docs/real-models.md's settings (32 prompts x 8, 1024 new
             tokens, micro-batch 4, --cuda-graph) on a GSM8K-style file: step times, response length,
             peak CUDA memory, the final checkpoint's time. Only for the first size.
  5 summary  a table.

Without transformers (or with --skip-hf) its parts are skipped with one line. Estimated H200 time for
0.5b, ~3 min in all: start-up ~15 s, build ~10 s, logits ~25 s (four 2 GB loads), sampler ~60 s
(transformers' generate is most of it), train ~70 s (3 steps of ~10 s: a 256 x 1024-token rollout and
64 micro-batches; then 7.4 GiB of final checkpoint, AdamW moments included, and policy/: ~20 s on a
VM disk); 1.5b adds ~90 s (--repeats 1). --budget-s skips the parts not started by then.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import tokenizers
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # before bench/: `sampler` is the root's sampler.py
import train  # noqa: E402
from bench.sampler import EOS, best_times, hf_forced, lognormal_lengths, ours_forced  # noqa: E402
from hf import load_config, load_model, save_model  # noqa: E402
from model import ModelConfig, Transformer  # noqa: E402
from sampler import generate  # noqa: E402

QWEN = dict(model_type="qwen2", vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6, rms_norm_eps=1e-6,
            max_position_embeddings=32768, num_key_value_heads=2)
SIZES = {"0.5b": dict(QWEN, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14),
         "1.5b": dict(QWEN, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12),
         "tiny": dict(QWEN, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4)}
FP32_TOL, BF16_FACTOR, BF16_SLACK, BF16_VS_HF_TOL = 1e-4, 1.5, 1e-3, 2e-2  # the logits checks (docstring)
CORPUS = ["Tom has 12 apples and buys 30 more. How many apples does he have? 12+30=42\n#### 42",
          "You are a helpful assistant.", "Please reason step by step, and put your final answer within \\boxed{}.",
          "A train travels 60 miles per hour for 3 hours: 60*3=180 miles. The answer is \\boxed{180}."] * 10


def say(msg: str) -> None:
    print(msg, flush=True)


def bf16_autocast(device: torch.device):
    """train.py's configuration: bf16 autocast over float32 weights on CUDA, nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def import_transformers(skip: bool):
    """The transformers module, or None (one line says why)."""
    if skip:
        say("transformers: --skip-hf, its parts skipped")
        return None
    try:
        import transformers
        transformers.AutoModelForCausalLM  # a lazy attribute: a broken install fails here, not in part 2
    except Exception as e:  # ImportError, or a transformers that does not work with this torch
        say(f"transformers not importable: {str(e).splitlines()[0] if str(e) else type(e).__name__}; its parts skipped")
        return None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def load_hf(tf, path: str, dtype: torch.dtype, device: torch.device):
    """transformers' model of the folder (its default attention, sdpa), in `dtype` on `device`."""
    return tf.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()


def make_tokenizer() -> Tokenizer:
    """A byte-level BPE with Qwen's specials (ids 0, 1, 2) and a few hundred tokens of math text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    return tok


def build(size: str, device: torch.device, path: str) -> dict:
    """Part 1: a random model of the size, initialised on the device, saved with the tokenizer."""
    tok = make_tokenizer()
    cfg = ModelConfig(eos_token_id=tok.token_to_id("<|endoftext|>"), **SIZES[size])
    torch.manual_seed(0)
    t = time.perf_counter()
    with torch.device(device), torch.no_grad():
        model = Transformer(cfg)
        for name, p in model.named_parameters():  # zeros and ones at init
            if name.endswith(".bias"):
                p.normal_(0.0, 0.02)
            elif "norm" in name:
                p.normal_(1.0, 0.1)
    t_init, n_params = time.perf_counter() - t, sum(p.numel() for p in model.parameters())
    t = time.perf_counter()
    save_model(model, path, tok)
    t_save = time.perf_counter() - t
    del model
    torch.cuda.empty_cache()
    n_tok = tok.get_vocab_size()
    try:  # as train.rollout decodes sampled ids: most of them are past this tokenizer's vocab
        texts = tok.decode_batch([[5, n_tok, cfg.vocab_size - 1, 6], [n_tok + 1], [1, 2, 40]], skip_special_tokens=True)
        decode = f"ok, ids >= {n_tok} dropped: {texts!r}"
    except Exception as e:
        decode = f"CRASH {type(e).__name__}: {e}"
    gib = os.path.getsize(Path(path) / "model.safetensors") / 2**30
    say(f"[1 build {size}] {n_params / 1e6:.1f}M params, init on {device.type} {t_init:.1f} s, save {gib:.2f} GiB "
        f"{t_save:.1f} s; tokenizer vocab {n_tok} < model vocab {cfg.vocab_size}; decoding such ids: {decode}")
    return {"params_m": n_params / 1e6, "init_s": t_init, "save_s": t_save, "file_gib": gib, "decode_oov": decode,
            "failed": [] if decode.startswith("ok") else ["decode of ids past the tokenizer's vocab"]}


def ragged_batch(lengths: list[int], vocab: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded random ids (B, T) and their mask (B, T)."""
    T, g = max(lengths), torch.Generator().manual_seed(0)
    ids, mask = torch.zeros(len(lengths), T, dtype=torch.long), torch.zeros(len(lengths), T, dtype=torch.bool)
    for i, n in enumerate(lengths):
        ids[i, T - n:], mask[i, T - n:] = torch.randint(3, vocab, (n,), generator=g), True
    return ids.to(device), mask.to(device)


@torch.no_grad()
def ours_logits(path: str, device: torch.device, dtype: torch.dtype, ids, mask, autocast: bool = False) -> list:
    """Logits at the real positions, (n, V) float32; with autocast, also those under bf16 autocast."""
    model = load_model(path, device=device, dtype=dtype).eval()
    out = [model(ids, mask)[mask].float()]
    if autocast:
        with bf16_autocast(device):
            out.append(model(ids, mask)[mask].float())
    del model
    torch.cuda.empty_cache()
    return out


@torch.no_grad()
def hf_logits(tf, path: str, device: torch.device, dtype: torch.dtype, ids, mask) -> torch.Tensor:
    model = load_hf(tf, path, dtype, device)
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)  # as ours (and HF's generate): positions count real tokens
    out = model(input_ids=ids, attention_mask=mask.long(), position_ids=pos, use_cache=False).logits[mask].float()
    del model
    torch.cuda.empty_cache()
    return out


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double()))


def logits_check(path: str, device: torch.device, tf, tiny: bool) -> dict:
    """Part 2: ours vs transformers, float32 and bf16, on a ragged left-padded batch."""
    ids, mask = ragged_batch([32, 25, 16, 5] if tiny else [128, 100, 64, 17], load_config(path).vocab_size, device)
    o32, oac = ours_logits(path, device, torch.float32, ids, mask, autocast=True)
    (o16,) = ours_logits(path, device, torch.bfloat16, ids, mask)
    if tf is None:
        r = {"ours_bf16_vs_ours_fp32": rel(o16, o32), "ours_autocast_vs_ours_fp32": rel(oac, o32), "hf": "skipped"}
        say(f"[2 logits] without transformers: ours-bf16 vs ours-fp32 {r['ours_bf16_vs_ours_fp32']:.2e}, "
            f"autocast vs ours-fp32 {r['ours_autocast_vs_ours_fp32']:.2e}")
        return {**r, "failed": []}
    h32 = hf_logits(tf, path, device, torch.float32, ids, mask)
    h16 = hf_logits(tf, path, device, torch.bfloat16, ids, mask)
    r = {"fp32": rel(o32, h32), "bf16_vs_hf_fp32": rel(o16, h32), "hf_bf16_vs_hf_fp32": rel(h16, h32),
         "autocast_vs_hf_fp32": rel(oac, h32), "bf16_vs_hf_bf16": rel(o16, h16),
         "argmax_agree": float((o16.argmax(-1) == h16.argmax(-1)).float().mean()), "positions": int(mask.sum())}
    bound, bound_hf = BF16_FACTOR * r["hf_bf16_vs_hf_fp32"] + BF16_SLACK, max(BF16_VS_HF_TOL, r["hf_bf16_vs_hf_fp32"])
    checks = {"fp32 vs hf": r["fp32"] <= FP32_TOL, "bf16 vs hf-fp32": r["bf16_vs_hf_fp32"] <= bound,
              "autocast vs hf-fp32": r["autocast_vs_hf_fp32"] <= bound,
              "bf16 vs hf-bf16": r["bf16_vs_hf_bf16"] <= bound_hf}
    r["failed"] = [f"logits: {k}" for k, ok in checks.items() if not ok]
    say(f"[2 logits] rel at {r['positions']} positions: fp32 {r['fp32']:.2e} (<= {FP32_TOL:.0e}); vs hf-fp32: "
        f"ours-bf16 {r['bf16_vs_hf_fp32']:.2e}, hf-bf16 {r['hf_bf16_vs_hf_fp32']:.2e}, ours autocast "
        f"{r['autocast_vs_hf_fp32']:.2e} (<= {bound:.2e}); ours-bf16 vs hf-bf16 {r['bf16_vs_hf_bf16']:.2e} "
        f"(<= {bound_hf:.2e}), greedy agreement {r['argmax_agree']:.3f}; {'FAIL' if r['failed'] else 'PASS'}")
    return r


def sampler_check(path: str, device: torch.device, tf, tiny: bool, repeats: int) -> dict:
    """Part 3: useful tokens/s of RL-shaped generation, ours (four ways) and transformers' generate."""
    B, L, N = (8, 16, 32) if tiny else (64, 128, 512)
    target = lognormal_lengths(B, N, N / 4, seed=0).to(device)
    useful = int(target.sum())
    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(3, load_config(path).vocab_size, (B, L), generator=g).to(device)
    prompts, outs, times, failed = prompt_ids.tolist(), {}, {}, []

    def ours(model, name: str, graph: bool, autocast: bool):
        def fn(n: int = N):
            gen = torch.Generator(device=device).manual_seed(0)  # the same draws in every variant and repeat
            with bf16_autocast(device) if autocast else nullcontext():
                outs[name] = generate(model, prompts, n, eos_token_ids=[EOS], generator=gen,
                                      logits_processor=ours_forced(target), cuda_graph=graph)
        return {name: fn}

    def timed(fns: dict) -> None:  # a short untimed warm-up (CUDA, cuBLAS, autocast), then best of `repeats`
        with torch.no_grad():
            for name, fn in list(fns.items()):
                try:
                    fn(min(N, 8))
                except Exception as e:  # e.g. a CUDA graph that fails to capture: time the others
                    traceback.print_exc()
                    failed.append(f"sampler: {name}: {type(e).__name__}: {str(e)[:200]}")
                    del fns[name]
            times.update(best_times(fns, repeats, device))

    for dtype, autocast, label in ((torch.bfloat16, False, "bf16"), (torch.float32, True, "fp32+autocast")):
        model = load_model(path, device=device, dtype=dtype)
        timed({**ours(model, f"ours {label} eager", False, autocast),
               **ours(model, f"ours {label} graph", True, autocast)})
        del model
        torch.cuda.empty_cache()
    failed += [f"sampler: {k}: lengths != target" for k, o in outs.items()
               if not (torch.equal(o.lengths, target) and bool(o.finished.all()))]
    a, b = outs.get("ours bf16 eager"), outs.get("ours bf16 graph")
    same = float("nan")  # the share of tokens bf16 eager and graph drew alike (same draws; rounding differs)
    if a is not None and b is not None:
        same = float((a.tokens == b.tokens)[a.mask & b.mask].float().mean())
    if tf is not None:
        hf, proc = load_hf(tf, path, torch.bfloat16, device), hf_forced(target, L)

        def hf_generate(n: int = N):
            outs["hf"] = hf.generate(prompt_ids, attention_mask=torch.ones_like(prompt_ids), do_sample=True,
                                     temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=n, eos_token_id=EOS,
                                     pad_token_id=0, logits_processor=[proc])

        timed({f"transformers {tf.__version__} bf16": hf_generate})
        del hf
        torch.cuda.empty_cache()
        new = outs.pop("hf")[:, L:] if "hf" in outs else None  # (B, longest target); None: generate failed
        if new is not None and not torch.equal((new == EOS).long().argmax(-1) + 1, target):  # first EOS: its end
            failed.append("sampler: transformers' lengths != target")
    hf_t = next((t for k, t in times.items() if k.startswith("transformers")), None)
    say(f"[3 sampler] batch {B}, prompt {L}, up to {N} new, {useful} useful tokens (longest {int(target.max())}), "
        f"best of {repeats}; ours bf16 eager and graph: {same:.3f} of tokens identical")
    for k, t in times.items():
        say(f"    {k:32s} {useful / t:9.0f} tokens/s {t:7.2f} s" + (f"  {hf_t / t:5.2f}x transformers" if hf_t else ""))
    return {"batch": B, "prompt": L, "max_new": N, "useful_tokens": useful, "repeats": repeats,
            "eager_graph_same": same, "seconds": times, "tokens_per_s": {k: useful / t for k, t in times.items()},
            "failed": failed}


def gsm8k_file(path: Path, n: int = 64) -> Path:
    rows = [{"question": f"Tom has {3 * i + 7} apples and buys {i + 5} more. How many apples does he have now?",
             "answer": f"He has {3 * i + 7}+{i + 5}={4 * i + 12} apples.\n#### {4 * i + 12}"} for i in range(n)]
    path.write_text("".join(json.dumps(d) + "\n" for d in rows))
    return path


def train_check(path: str, device: torch.device, tiny: bool, work: Path, cuda_graph: bool) -> dict:
    """Part 4: three steps of train.main at docs/real-models.md's settings; times and peak memory.
    cuda_graph False (the sampler's graphs failed): the steps run eager rather than not at all."""
    out = work / "run"
    argv = ["--model", path, "--data", str(gsm8k_file(work / "gsm8k.jsonl")), "--template", "qwen-chat",
            "--device", device.type, "--steps", "3", "--lr", "1e-6", "--eval-prompts", "0", "--save-every", "0",
            "--out", str(out), "--prompts-per-step", "2" if tiny else "32", "--group-size", "2" if tiny else "8",
            "--max-new-tokens", "16" if tiny else "1024", "--micro-batch", "2" if tiny else "4"]
    argv += ["--cuda-graph"] if cuda_graph and not tiny else []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.time()
    rc = train.main(argv)
    r = {"rc": rc, "wall_s": time.time() - t0, "argv": argv, "failed": [] if rc == 0 else [f"train: rc {rc}"]}
    if device.type == "cuda":
        r["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        r["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    torch.cuda.empty_cache()
    rows = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()] if rc == 0 else []
    if len(rows) != 3 or not all(math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"]) for m in rows):
        r["failed"].append(f"train: {len(rows)} steps logged (want 3), or a non-finite loss or gradient norm")
    if not rows:
        return r
    r["steps"] = [{k: m[k] for k in ("time_s", "t_rollout", "t_update", "response_len", "truncated", "empty")}
                  for m in rows]
    r["mean_response_len"] = sum(m["response_len"] for m in rows) / len(rows)
    loop_start = os.path.getmtime(out / "eval.jsonl")  # written just before the loop starts its clock
    r["setup_s"] = loop_start - t0
    r["final_save_s"] = t0 + r["wall_s"] - loop_start - rows[-1]["elapsed_s"]  # checkpoint, then policy/
    r["policy_saved"] = (out / "policy" / "model.safetensors").exists()
    r["run_gib"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**30
    mem = f", peak {r['peak_allocated_gib']:.1f} GiB allocated / {r['peak_reserved_gib']:.1f} reserved" \
        if device.type == "cuda" else ""
    graph = " with --cuda-graph" if "--cuda-graph" in argv else ""
    say(f"[4 train] {len(rows)} steps{graph}, {r['wall_s']:.0f} s in all (setup {r['setup_s']:.1f} s, final "
        f"checkpoint + policy {r['final_save_s']:.1f} s, {r['run_gib']:.2f} GiB){mem}; "
        f"mean response {r['mean_response_len']:.0f}")
    for m in r["steps"]:
        say(f"    step {m['time_s']:.2f} s (rollout {m['t_rollout']:.2f}, update {m['t_update']:.2f}), response "
            f"{m['response_len']:.0f}, truncated {m['truncated']}, empty texts {m['empty']}")
    return r


def summary(res: dict) -> str:
    d = res["device"]
    lines = [f"== {d['name']}: torch {d['torch']}, CUDA {d['cuda']}, transformers {d['transformers']} =="]
    for size, r in res["sizes"].items():
        lg, tr = r.get("logits", {}), r.get("train", {})
        if "fp32" in lg:
            lines.append(f"{size:5s} logits  fp32 {lg['fp32']:.1e} | vs hf-fp32: bf16 {lg['bf16_vs_hf_fp32']:.1e}, "
                         f"hf-bf16 {lg['hf_bf16_vs_hf_fp32']:.1e}, autocast {lg['autocast_vs_hf_fp32']:.1e} | vs "
                         f"hf-bf16 {lg['bf16_vs_hf_bf16']:.1e}, argmax {lg['argmax_agree']:.2f} | "
                         + ("FAIL" if lg["failed"] else "PASS"))
        elif "hf" in lg:
            lines.append(f"{size:5s} logits  no transformers; ours-bf16 vs fp32 {lg['ours_bf16_vs_ours_fp32']:.1e}")
        for k, v in r.get("sampler", {}).get("tokens_per_s", {}).items():
            lines.append(f"{size:5s} sampler {k:32s} {v:9.0f} tokens/s")
        if "steps" in tr:
            mem = f", peak {tr['peak_allocated_gib']:.1f} / {tr['peak_reserved_gib']:.1f} GiB (allocated / reserved)" \
                if "peak_allocated_gib" in tr else ""
            lines.append(f"{size:5s} train   {sum(m['time_s'] for m in tr['steps']) / len(tr['steps']):.1f} s/step, "
                         f"response {tr['mean_response_len']:.0f}{mem}, final save {tr['final_save_s']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="tiny shapes (the CPU dry run)")
    ap.add_argument("--sizes", default="0.5b", help="comma-separated: 0.5b, 1.5b (train runs for the first only)")
    ap.add_argument("--repeats", type=int, default=2, help="sampler: best of this many (1 for the later sizes)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--out", default=None, help="write the results here as JSON (after every part)")
    ap.add_argument("--budget-s", type=float, default=None, help="skip the parts not started after this many seconds")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    sizes = ["tiny"] if args.tiny else args.sizes.split(",")
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda, but torch sees no CUDA device (try --device cpu --tiny)", file=sys.stderr)
        return 2
    if any(s not in SIZES for s in sizes):
        print(f"gpu_check: --sizes {args.sizes}: the sizes are 0.5b and 1.5b", file=sys.stderr)
        return 2
    if device.type == "cuda":  # a true float32 reference
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    tf = import_transformers(args.skip_hf)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    info = {"name": name, "torch": torch.__version__, "cuda": torch.version.cuda, "tokenizers": tokenizers.__version__,
            "transformers": tf.__version__ if tf else "skipped" if args.skip_hf else "not importable"}
    if device.type == "cuda":
        info["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    say("[0 device] " + ", ".join(f"{k} {v}" for k, v in info.items()))
    res = {"device": info, "args": vars(args), "sizes": {}}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(res, indent=1, default=str) + "\n")

    def part(size: str, name: str, fn) -> None:
        if args.budget_s is not None and time.perf_counter() - t_start > args.budget_s:
            say(f"[{name} {size}] skipped: the budget of {args.budget_s:.0f} s is spent")
            res["sizes"][size][name] = {"skipped": "budget", "failed": []}
        else:
            t = time.perf_counter()
            try:
                res["sizes"][size][name] = fn()
            except Exception as e:  # one run on the GPU: report it, go on with the next part
                traceback.print_exc()
                res["sizes"][size][name] = {"error": repr(e), "failed": [f"{name}: {type(e).__name__}: {str(e)[:200]}"]}
            res["sizes"][size][name]["part_s"] = time.perf_counter() - t
        save()

    for i, size in enumerate(sizes):
        res["sizes"][size] = {}
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
            path = str(Path(work) / "model")
            part(size, "build", lambda: build(size, device, path))
            if not Path(path).exists():
                continue
            part(size, "logits", lambda: logits_check(path, device, tf, args.tiny))
            part(size, "sampler", lambda: sampler_check(path, device, tf, args.tiny, args.repeats if i == 0 else 1))
            if i == 0 and not args.skip_train:
                graph_ok = not any(" graph" in f for f in res["sizes"][size]["sampler"]["failed"])
                part(size, "train", lambda: train_check(path, device, args.tiny, Path(work), graph_ok))
    failed = [f"{size}: {f}" for size, parts in res["sizes"].items() for p in parts.values() for f in p["failed"]]
    res.update(failed=failed, ok=not failed, total_s=time.perf_counter() - t_start)
    save()
    say(summary(res))
    say(f"total {res['total_s']:.0f} s; " + ("every check passed" if not failed else "FAILED: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
