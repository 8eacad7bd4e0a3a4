"""A follow-up on the H200 (run once, output in h200-1.5b-eager-diag.log): in the gpu_check run, 1.5B's
bf16 eager decode (ours and transformers' alike) took ~70 ms a step against ~23 ms under fp32+autocast.
Here, in a fresh process, the four ways are timed over 48 steps (B 64, prompt 128) at 16 and 1 threads,
then profiled.  python research/results/gpu-check/diag_1p5b_eager.py [cuda|cpu]"""
import sys, time, torch
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[3]))
from model import ModelConfig, Transformer
from sampler import generate
dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else 'cuda')
tiny = dev.type == 'cpu'
QWEN = dict(model_type="qwen2", vocab_size=151936 if not tiny else 512, tie_word_embeddings=True, rope_theta=1e6,
            rms_norm_eps=1e-6, max_position_embeddings=32768, num_key_value_heads=2, attention_bias=True)
cfg = ModelConfig(**QWEN, hidden_size=1536 if not tiny else 64, intermediate_size=8960 if not tiny else 128,
                  num_hidden_layers=28 if not tiny else 2, num_attention_heads=12 if not tiny else 4, eos_token_id=2)
with torch.device(dev):
    m32 = Transformer(cfg).eval()
m16 = Transformer(ModelConfig(**QWEN, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                              num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                              eos_token_id=2)).to(dev, torch.bfloat16).eval() if not tiny else m32
prompts = torch.randint(3, cfg.vocab_size, (64, 128)).tolist()
N = 48
def run(model, ac, graph):
    g = torch.Generator(device=dev).manual_seed(0)
    ctx = torch.autocast('cuda', dtype=torch.bfloat16) if ac and dev.type == 'cuda' else torch.autocast('cpu', enabled=False)
    with ctx:
        return generate(model, prompts, N, eos_token_ids=[-1], generator=g, cuda_graph=graph)
def t(fn):
    fn()
    if dev.type == 'cuda': torch.cuda.synchronize()
    t0 = time.perf_counter(); fn()
    if dev.type == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t0) / N * 1e3
for threads in (16, 1):
    torch.set_num_threads(threads)
    print(f"threads {threads}: ms/step bf16 eager {t(lambda: run(m16, False, False)):.1f}, fp32+ac eager {t(lambda: run(m32, True, False)):.1f}, "
          f"bf16 graph {t(lambda: run(m16, False, True)):.1f}, fp32+ac graph {t(lambda: run(m32, True, True)):.1f}", flush=True)
from torch.profiler import profile, ProfilerActivity
acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == 'cuda' else [])
for name, model, ac in (("bf16 eager", m16, False), ("fp32+ac eager", m32, True)):
    with profile(activities=acts) as prof:
        run(model, ac, False)
        if dev.type == 'cuda': torch.cuda.synchronize()
    print(f"== {name}: top by self CPU")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=50))
    if dev.type == 'cuda':
        print(f"== {name}: top by self CUDA")
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=50))
