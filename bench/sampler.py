"""Sampler throughput: our KV-cache `generate` vs the same model without a cache, and vs
transformers' `generate` (same weights: save_model, then load both), when transformers is
importable. Not a test. Timings are noisy on shared machines, so we print ratios measured
in the same process, best of --repeats.

    python bench/sampler.py                       # ~1M-parameter Llama, CPU (1 thread), B=64, prompt 32, 128 new
    python bench/sampler.py --size 5m --device cuda --dtype bfloat16
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from model import ModelConfig, Transformer, load_model, save_model  # noqa: E402
from sampler import generate, sample  # noqa: E402

SIZES = {  # random-weight Llama-style models (GQA, untied)
    "0.2m": dict(vocab_size=64, hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
    "1m": dict(vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2),
    "5m": dict(vocab_size=2048, hidden_size=256, intermediate_size=768, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4),
    "300m": dict(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_times(fns: dict, repeats: int, device) -> dict:
    """Best wall time of each function; the repeats are interleaved so that load from other
    processes hits all of them alike."""
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - t)
    return best


@torch.no_grad()
def generate_no_cache(model, prompt_ids, max_new_tokens, temperature, generator):
    """The baseline: recompute the whole sequence for every new token (equal-length prompts)."""
    ids = prompt_ids
    for _ in range(max_new_tokens):
        logits = model(ids)[:, -1]  # (B, V), from a (B, T, V) forward over everything so far
        ids = torch.cat([ids, sample(logits, temperature, 0, 1.0, generator)[:, None]], dim=1)
    return ids[:, prompt_ids.shape[1]:]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1m", choices=sorted(SIZES))
    ap.add_argument("--model", default=None, help="a Hugging Face model folder (e.g. toy) instead of --size")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--threads", type=int, default=1,  # on a shared machine 2+ OpenMP threads make timings chaotic
                    help="torch CPU threads")
    ap.add_argument("--skip-no-cache", action="store_true")
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    torch.manual_seed(0)
    if args.model:
        tmp = args.model
    else:
        cfg = ModelConfig(model_type="llama", max_position_embeddings=args.prompt_len + args.new_tokens, **SIZES[args.size])
        tmp = tempfile.mkdtemp(prefix="bench-sampler-")
        save_model(Transformer(cfg), tmp)
    model = load_model(tmp, device=device, dtype=dtype)
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    B, L, N = args.batch, args.prompt_len, args.new_tokens
    prompt_ids = torch.randint(3, cfg.vocab_size, (B, L), device=device)
    prompts = prompt_ids.tolist()
    gen = torch.Generator(device=device).manual_seed(0)
    print(f"model: {args.model or 'llama ' + args.size} {cfg.model_type} ({n_params / 1e6:.2f}M params), {device} {args.dtype}, "
          f"{torch.get_num_threads()} threads; batch {B}, prompt {L}, {N} new tokens, T={args.temperature}, best of {args.repeats}")

    def ours():
        out = generate(model, prompts, N, temperature=args.temperature, eos_token_ids=[-1], generator=gen)
        assert out.tokens.shape == (B, N)

    fns = {"ours (KV cache)": ours}
    if not args.skip_no_cache:
        fns["no cache"] = lambda: generate_no_cache(model, prompt_ids, N, args.temperature, gen)
    if not args.skip_hf:
        try:
            import transformers
            from transformers import AutoModelForCausalLM
            transformers.utils.logging.set_verbosity_error()
        except ImportError:
            print("transformers not importable: skipping its generate")
        else:
            hf = AutoModelForCausalLM.from_pretrained(tmp, dtype=dtype).to(device).eval()
            mask = torch.ones_like(prompt_ids)

            def hf_generate():
                with torch.no_grad():
                    out = hf.generate(prompt_ids, attention_mask=mask, do_sample=True, temperature=args.temperature,
                                      top_k=0, top_p=1.0, max_new_tokens=N, min_new_tokens=N,
                                      eos_token_id=None, pad_token_id=0)
                assert out.shape == (B, L + N)

            fns[f"transformers {transformers.__version__} generate"] = hf_generate
    results = best_times(fns, args.repeats, device)
    ours_t = results["ours (KV cache)"]
    for name, t in results.items():
        print(f"{name:34s} {B * N / t:10.0f} tokens/s  {t:7.2f} s   ours is {t / ours_t:5.2f}x faster")


if __name__ == "__main__":
    main()
