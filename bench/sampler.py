"""Sampler throughput: our KV-cache `generate` vs transformers' `generate` on the same weights
(save_model, then load both), when transformers is importable, and vs the same model without a
cache. Not a test. Timings are noisy on shared machines, so we print ratios measured in the same
process, best of --repeats, the repeats interleaved.

Three workloads (all by default):
  fixed        every row generates exactly --new-tokens tokens (no EOS): the per-step cost alone.
               ~1M-parameter Llama, batch 64, prompt 32, 128 new tokens.
  rl           a GRPO rollout's shape: 8 prompts x 8 samples (--group-size), rows ending at
               long-tailed lengths, log-normal with a median of a quarter of --rl-new-tokens
               (sigma 0.75), clipped to [1, max]; a 28M-parameter Qwen2 (matmuls dominate), batch
               64, prompt 32, up to 256 new tokens. transformers gets the 8 prompts with
               num_return_sequences=8, as GRPO trainers on top of it do; we prefill each prompt
               once (samples_per_prompt=8).
  rl-distinct  the same with 64 distinct prompts (group size 1): both sides prefill 64 rows.
Both sides are forced to end each row at its drawn length the same way: a logits processor that
leaves only EOS at that step and forbids EOS before it. Throughput counts useful tokens (the rows'
lengths summed): transformers computes every row until the longest ends; we drop finished rows
(sampler.generate(drop_finished=True)).

    python bench/sampler.py                              # all three workloads, CPU, 1 thread (~5 min)
    python bench/sampler.py --workload rl --repeats 5
    python bench/sampler.py --workload fixed --model toy  # the shipped toy instead of --size
    python bench/sampler.py --workload rl --device cuda --dtype bfloat16 --cuda-graph
"""
import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from hf import load_model, save_model  # noqa: E402
from model import ModelConfig, Transformer  # noqa: E402
from sampler import generate, sample  # noqa: E402

SIZES = {  # random-weight models (GQA, untied unless said)
    "0.2m": dict(model_type="llama", vocab_size=64, hidden_size=64, intermediate_size=192, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2),
    "1m": dict(model_type="llama", vocab_size=1024, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
               num_attention_heads=4, num_key_value_heads=2),
    "5m": dict(model_type="llama", vocab_size=2048, hidden_size=256, intermediate_size=768, num_hidden_layers=6,
               num_attention_heads=8, num_key_value_heads=4),
    "28m": dict(model_type="qwen2", vocab_size=8192, hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                num_attention_heads=8, num_key_value_heads=2, attention_bias=True, tie_word_embeddings=True),
    "300m": dict(model_type="llama", vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                 num_attention_heads=16, num_key_value_heads=8),
}
EOS = 2  # the end token of the forced-length workload


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


def lognormal_lengths(n: int, max_len: int, median: float, sigma: float = 0.75, seed: int = 0) -> torch.Tensor:
    """n row lengths, log-normal (median `median`, log-sd `sigma`), rounded and clipped to [1, max_len]."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    return (median * torch.exp(sigma * z)).round().clamp(1, max_len).long()


def forced_end(logits: torch.Tensor, target: torch.Tensor, step: int, eos: int) -> torch.Tensor:
    """Rows whose target length is step + 1 can only draw EOS; the others cannot draw it.
    logits (b, V), target (b,) the lengths of these rows."""
    end = (target == step + 1)[:, None]  # (b, 1)
    is_eos = torch.arange(logits.shape[-1], device=logits.device)[None, :] == eos  # (1, V)
    return logits.masked_fill(end & ~is_eos, float("-inf")).masked_fill(~end & is_eos, float("-inf"))


def ours_forced(target: torch.Tensor):
    """sampler.generate's logits_processor: (logits of the rows in the batch, their rows, step)."""
    return lambda logits, rows, step: forced_end(logits, target[rows], step, EOS)


def hf_forced(target: torch.Tensor, prompt_len: int):
    """The same rule as a transformers LogitsProcessor (it sees every row, finished or not)."""
    from transformers import LogitsProcessor

    class ForcedEnd(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return forced_end(scores, target, input_ids.shape[1] - prompt_len, EOS)

    return ForcedEnd()


@torch.no_grad()
def generate_no_cache(model, prompt_ids, max_new_tokens, temperature, generator):
    """The baseline: recompute the whole sequence for every new token (equal-length prompts)."""
    ids = prompt_ids
    for _ in range(max_new_tokens):
        logits = model(ids)[:, -1]  # (B, V), from a (B, T, V) forward over everything so far
        ids = torch.cat([ids, sample(logits, temperature, 0, 1.0, generator)[:, None]], dim=1)
    return ids[:, prompt_ids.shape[1]:]


def load_hf(path, dtype, device):
    try:
        import transformers
        from transformers import AutoModelForCausalLM
        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        print("transformers not importable: skipping its generate")
        return None, None
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval(), transformers.__version__


def random_model_dir(size: str, max_pos: int) -> str:
    cfg = ModelConfig(max_position_embeddings=max_pos, eos_token_id=EOS, **SIZES[size])
    path = tempfile.mkdtemp(prefix="bench-sampler-")
    save_model(Transformer(cfg), path)
    return path


def run_fixed(args, device, dtype) -> dict:
    """Every row generates exactly N tokens: the cost of a decode step, nothing to drop."""
    B, L, N = args.batch, args.prompt_len, args.new_tokens
    path = args.model or random_model_dir(args.size, L + N)
    model = load_model(path, device=device, dtype=dtype)
    prompt_ids = torch.randint(3, model.config.vocab_size, (B, L), device=device)
    prompts = prompt_ids.tolist()
    gen = torch.Generator(device=device).manual_seed(0)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"\n[fixed] {args.model or args.size} {model.config.model_type} ({n_params / 1e6:.2f}M params), {device} "
          f"{args.dtype}, {torch.get_num_threads()} threads; batch {B}, prompt {L}, {N} new tokens, no EOS, "
          f"T={args.temperature}, best of {args.repeats}")
    fns = {"ours (KV cache)": lambda: generate(model, prompts, N, temperature=args.temperature, eos_token_ids=[-1],
                                               generator=gen, cuda_graph=args.cuda_graph)}
    if not args.skip_no_cache:
        fns["no cache"] = lambda: generate_no_cache(model, prompt_ids, N, args.temperature, gen)
    hf, version = (None, None) if args.skip_hf else load_hf(path, dtype, device)
    if hf is not None:
        mask = torch.ones_like(prompt_ids)

        def hf_generate():
            out = hf.generate(prompt_ids, attention_mask=mask, do_sample=True, temperature=args.temperature, top_k=0,
                              top_p=1.0, max_new_tokens=N, min_new_tokens=N, eos_token_id=None, pad_token_id=0)
            assert out.shape == (B, L + N)

        fns[f"transformers {version} generate"] = hf_generate
    with torch.no_grad():
        times = best_times(fns, args.repeats, device)
    return report(times, B * N)


def run_rl(args, device, dtype, G: int) -> dict:
    """Rows (B / G prompts x G samples, prompt-major) end at long-tailed lengths, forced the same
    way on both sides; useful tokens/s."""
    B, L, N = args.batch, args.prompt_len, args.rl_new_tokens
    if B % G:
        raise SystemExit(f"bench/sampler.py: --batch {B} is not a multiple of --group-size {G}")
    path = random_model_dir(args.rl_size, L + N)
    model = load_model(path, device=device, dtype=dtype)
    target = lognormal_lengths(B, N, N / 4, seed=args.seed).to(device)
    useful = int(target.sum())
    prompt_ids = torch.randint(3, model.config.vocab_size, (B // G, L), device=device)
    prompts = prompt_ids.tolist()
    gen = torch.Generator(device=device).manual_seed(0)
    n_params = sum(p.numel() for p in model.parameters())
    q = target.float().quantile(torch.tensor([0.5, 0.9], device=device)).tolist()
    print(f"\n[rl{'' if G > 1 else '-distinct'}] random {args.rl_size} {model.config.model_type} ({n_params / 1e6:.1f}M "
          f"params), {device} {args.dtype}, {torch.get_num_threads()} threads; batch {B} = {B // G} prompts x {G} samples, "
          f"prompt {L}, up to {N} new tokens; lengths log-normal: "
          f"median {q[0]:.0f}, p90 {q[1]:.0f}, longest {int(target.max())}, mean {target.float().mean():.1f} "
          f"(useful share of B x longest: {useful / (B * int(target.max())):.2f}); best of {args.repeats}")

    def ours(drop=True):
        out = generate(model, prompts, N, temperature=args.temperature, eos_token_ids=[EOS], generator=gen,
                       samples_per_prompt=G, logits_processor=ours_forced(target), drop_finished=drop,
                       cuda_graph=args.cuda_graph)
        assert torch.equal(out.lengths, target) and bool(out.finished.all())

    fns = {"ours (drops finished rows)": ours, "ours, keeping finished rows": lambda: ours(False)}
    hf, version = (None, None) if args.skip_hf else load_hf(path, dtype, device)
    if hf is not None:
        mask = torch.ones_like(prompt_ids)
        proc = hf_forced(target, L)

        def hf_generate():
            out = hf.generate(prompt_ids, attention_mask=mask, do_sample=True, temperature=args.temperature, top_k=0,
                              top_p=1.0, max_new_tokens=N, eos_token_id=EOS, pad_token_id=0, logits_processor=[proc],
                              num_return_sequences=G)
            assert out.shape == (B, L + int(target.max()))
            assert torch.equal((out[:, L:] == EOS).long().argmax(-1) + 1, target)  # each row ended where drawn

        fns[f"transformers {version} generate"] = hf_generate
    with torch.no_grad():
        times = best_times(fns, args.repeats, device)
    return report(times, useful)


def report(times: dict, n_tokens: int) -> dict:
    ours_t = next(iter(times.values()))
    for name, t in times.items():
        print(f"  {name:34s} {n_tokens / t:10.0f} tokens/s  {t:7.2f} s   ours is {t / ours_t:5.2f}x faster")
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="all", choices=["all", "fixed", "rl", "rl-distinct"])
    ap.add_argument("--size", default="1m", choices=sorted(SIZES), help="fixed workload's random model")
    ap.add_argument("--rl-size", default="28m", choices=sorted(SIZES), help="rl workload's random model")
    ap.add_argument("--model", default=None, help="fixed workload: a Hugging Face model folder (e.g. toy) instead of --size")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=128, help="fixed workload: tokens per row")
    ap.add_argument("--rl-new-tokens", type=int, default=256, help="rl workload: the longest a row may run")
    ap.add_argument("--seed", type=int, default=0, help="rl workload: the draw of the lengths")
    ap.add_argument("--group-size", type=int, default=8, help="rl workload: samples per prompt")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--cuda-graph", action="store_true", help="our decode steps as CUDA graphs (static shapes)")
    ap.add_argument("--threads", type=int, default=1,  # on a shared machine 2+ OpenMP threads make timings chaotic
                    help="torch CPU threads")
    ap.add_argument("--skip-no-cache", action="store_true")
    ap.add_argument("--skip-hf", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.workload in ("all", "fixed"):
        run_fixed(args, device, dtype)
    if args.workload in ("all", "rl"):
        run_rl(args, device, dtype, args.group_size)
    if args.workload in ("all", "rl-distinct"):
        run_rl(args, device, dtype, 1)


if __name__ == "__main__":
    main()
