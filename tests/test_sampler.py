import json
from pathlib import Path

import pytest
import torch

from hf import load_model
from logprobs import MIN_ROWS, logits_to_logprobs
from sampler import Generation, generate, logits_to_probs

FIX = Path(__file__).parent / "fixtures"
FAMILIES = ["qwen2", "llama", "qwen3"]


PROMPTS = [[1, 5, 9], [1, 40, 41, 42, 43, 44, 45], [1, 100, 7, 7, 30]]


@pytest.fixture(scope="module")
def llama():
    return load_model(FIX / "llama")


def recompute_logprobs(m, prompt, completion, temperature):
    """Full forward pass of one row alone: log pi(completion_t | prompt, completion_<t)."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        lp = logits_to_logprobs(m(ids)[0], temperature)  # (T, V)
    return lp[len(prompt) - 1:-1].gather(-1, torch.tensor(completion)[:, None]).squeeze(-1)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_ragged_batch_equals_transformers_rows_alone(family):
    m = load_model(FIX / family)
    golden = json.loads((FIX / family / "golden.json").read_text())
    out = generate(m, golden["prompts"], golden["max_new_tokens"], temperature=0.0)
    for i, want in enumerate(golden["greedy"]):
        got = out.tokens[i, :out.lengths[i]].tolist()
        assert got == want[:len(got)] and (len(got) == len(want) or want[len(got) - 1] == 2)
    # temperature 0 reports log-probs at T = 1
    lp = recompute_logprobs(m, golden["prompts"][1], out.tokens[1, :out.lengths[1]].tolist(), 1.0)
    assert (lp - out.logprobs[1, :out.lengths[1]]).abs().max().item() <= 1e-4


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.7, 20, 0.9)])
def test_logprobs_equal_full_forward_recompute(family, temperature, top_k, top_p):
    m = load_model(FIX / family)
    g = torch.Generator().manual_seed(0)
    out = generate(m, PROMPTS, 10, temperature=temperature, top_k=top_k, top_p=top_p, generator=g,
                   samples_per_prompt=2, return_prompt_logprobs=True)
    assert out.tokens.shape == out.logprobs.shape == out.mask.shape == (6, out.tokens.shape[1])
    for b in range(6):
        prompt, n = PROMPTS[b // 2], int(out.lengths[b])
        assert out.mask[b].sum() == n and out.mask[b, :n].all()
        lp = recompute_logprobs(m, prompt, out.tokens[b, :n].tolist(), temperature)
        assert (lp - out.logprobs[b, :n]).abs().max().item() <= 1e-4
    # prompt log-probs from the prefill == recomputed, left-aligned, masked by length
    assert out.prompt_logprobs.shape == out.prompt_mask.shape == (3, 6)
    for p, prompt in enumerate(PROMPTS):
        with torch.no_grad():
            lp = logits_to_logprobs(m(torch.tensor([prompt]))[0, :-1], temperature)
        want = lp.gather(-1, torch.tensor(prompt[1:])[:, None]).squeeze(-1)
        assert out.prompt_mask[p].sum() == len(prompt) - 1 and out.prompt_mask[p, :len(prompt) - 1].all()
        assert (out.prompt_logprobs[p, :len(prompt) - 1] - want).abs().max().item() <= 1e-4
        assert (out.prompt_logprobs[p, len(prompt) - 1:] == 0).all()


def test_determinism_by_seed(llama):
    run = lambda s: generate(llama, PROMPTS, 12, generator=torch.Generator().manual_seed(s), samples_per_prompt=2)
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs)
    assert not torch.equal(a.tokens, c.tokens)


def test_samples_per_prompt_is_prompt_major_and_equals_repeated_prompts(llama):
    G = 3
    greedy = generate(llama, PROMPTS, 6, temperature=0, samples_per_prompt=G)
    alone = generate(llama, PROMPTS, 6, temperature=0)
    for b in range(len(PROMPTS) * G):
        assert torch.equal(greedy.tokens[b], alone.tokens[b // G])
    shared = generate(llama, PROMPTS, 6, generator=torch.Generator().manual_seed(3), samples_per_prompt=G)
    repeated = generate(llama, [p for p in PROMPTS for _ in range(G)], 6, generator=torch.Generator().manual_seed(3))
    assert torch.equal(shared.tokens, repeated.tokens)
    assert (shared.logprobs - repeated.logprobs).abs().max().item() <= 1e-5
    assert len({tuple(r) for r in shared.tokens.tolist()}) > len(PROMPTS)  # the G samples differ


def test_pad_equals_eos_model(llama):
    first = generate(llama, PROMPTS, 8, temperature=0)
    eos = int(first.tokens[0, 2])  # make the 3rd greedy token of row 0 the EOS (and the pad) id
    llama.config.pad_token_id = eos  # the sampler must not care (restored below)
    prompts = [PROMPTS[0], [1, eos, eos, 40, eos]]  # an EOS/pad id inside a prompt is a real token
    out = generate(llama, prompts, 8, temperature=0, eos_token_ids=[eos], return_prompt_logprobs=True)
    assert out.lengths[0] == 3 and out.finished[0] and out.tokens[0, 2] == eos
    assert out.mask[0].tolist() == [True] * 3 + [False] * (out.tokens.shape[1] - 3)
    alone = generate(llama, prompts[1:], 8, temperature=0, eos_token_ids=[eos])
    n = int(alone.lengths[0])
    assert torch.equal(out.tokens[1, :n], alone.tokens[0, :n]) and out.lengths[1] == n
    assert out.prompt_mask[1].all()  # all 4 prompt transitions count, including those to the eos id
    llama.config.pad_token_id = 0


def test_stops_when_all_rows_finished(llama):
    first = generate(llama, PROMPTS, 8, temperature=0)
    eos = [int(first.tokens[i, 1]) for i in range(3)]  # each row's 2nd greedy token ends it
    out = generate(llama, PROMPTS, 50, temperature=0, eos_token_ids=eos)
    assert out.finished.all()
    assert out.tokens.shape[1] == int(out.lengths.max()) <= 2
    cut = generate(llama, PROMPTS, 5, temperature=0, eos_token_ids=[127 + 1000])
    assert not cut.finished.any() and (cut.lengths == 5).all() and cut.mask.all()


def test_eos_defaults_to_model_eos_ids(llama):
    first = generate(llama, PROMPTS[:1], 8, temperature=0)
    eos = int(first.tokens[0, 3])
    llama.eos_token_ids = [eos]
    try:
        out = generate(llama, PROMPTS[:1], 8, temperature=0)
    finally:
        llama.eos_token_ids = [2]
    assert out.lengths[0] == first.tokens[0].tolist().index(eos) + 1 and out.finished[0]


def test_logits_to_probs_filters():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]])
    p = logits_to_probs(logits, 1.0)
    assert torch.allclose(p, torch.softmax(logits, -1))
    assert torch.allclose(logits_to_probs(logits, 0.0), torch.tensor([[1.0, 0, 0, 0, 0]]))
    k2 = logits_to_probs(logits, 0.5, top_k=2)
    assert torch.allclose(k2[0, :2], torch.softmax(logits[0, :2] / 0.5, -1)) and (k2[0, 2:] == 0).all()
    # nucleus: the smallest set reaching top_p; p = [.64, .24, .09, .03, .01]
    assert (logits_to_probs(logits, 1.0, top_p=0.5)[0, 1:] == 0).all()
    nz = (logits_to_probs(logits, 1.0, top_p=0.8) > 0).sum().item()
    assert nz == 2
    assert torch.allclose(logits_to_logprobs(logits, 0.0), torch.log_softmax(logits, -1))


def test_inverse_cdf_draw_never_picks_a_zero_probability_token(monkeypatch):
    from sampler import sample
    logits = torch.tensor([[0.0, 1.0, -float("inf"), -float("inf")], [2.0, -float("inf"), 0.5, -float("inf")]])
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.ones(*shape))  # the top of [0, 1]
    assert sample(logits, 1.0, 0, 1.0).tolist() == [1, 2]  # the last token with probability > 0
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.zeros(*shape))
    assert sample(logits, 1.0, 0, 1.0).tolist() == [0, 0]


def test_top_k_sampling_stays_in_top_k(llama):
    out = generate(llama, PROMPTS, 10, top_k=1, generator=torch.Generator().manual_seed(0))
    greedy = generate(llama, PROMPTS, 10, temperature=0)
    assert torch.equal(out.tokens, greedy.tokens)  # top_k = 1 is greedy, whatever the seed
    assert (out.logprobs <= 0).all() and (out.logprobs < -1e-3).any()  # log pi before top-k, not log 1


@pytest.mark.parametrize("args, kw, words", [
    (([], 4), {}, "prompt list is empty"),
    (([[1, 2], []], 4), {}, "prompt 1 is empty"),
    (([[1] * 250], 7), {}, "prompt 0 has 250 tokens \\+ max_new_tokens 7 > max_position_embeddings 256"),
    (([[1, 2]], 0), {}, "max_new_tokens"),
    (([[1, 500]], 3), {}, "token id outside"),
    (([[1, 2]], 3), {"samples_per_prompt": 0}, "samples_per_prompt"),
    (([[1, 2]], 3), {"top_p": 0.0}, "top_p"),
])
def test_bad_inputs_are_one_line_value_errors(llama, args, kw, words):
    with pytest.raises(ValueError, match=words) as e:
        generate(llama, *args, **kw)
    assert "\n" not in str(e.value)


def test_generation_record_types(llama):
    out = generate(llama, PROMPTS, 4, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, Generation) and out.prompt_logprobs is None and out.prompt_mask is None
    assert out.tokens.dtype == torch.long and out.logprobs.dtype == torch.float32
    assert out.mask.dtype == torch.bool and out.lengths.dtype == torch.long and out.finished.dtype == torch.bool


def test_bfloat16_generation_runs_and_reports_float32_logprobs():
    m = load_model(FIX / "qwen2", dtype=torch.bfloat16)
    out = generate(m, PROMPTS, 6, generator=torch.Generator().manual_seed(0), samples_per_prompt=2,
                   return_prompt_logprobs=True)
    assert out.logprobs.dtype == torch.float32 and torch.isfinite(out.logprobs).all()
    assert (out.logprobs[out.mask] <= 0).all() and torch.isfinite(out.prompt_logprobs).all()


def test_single_token_prompts(llama):
    out = generate(llama, [[1], [5]], 3, temperature=0, return_prompt_logprobs=True)
    assert out.prompt_logprobs.shape == out.prompt_mask.shape == (2, 0)
    alone = generate(llama, [[5]], 3, temperature=0)
    assert torch.equal(out.tokens[1], alone.tokens[0])


# ----------------------------------------------------------------------------------------------
# dropping finished rows, the fixed-shape (CUDA graph) step, logits processors, the cache dtype

RAGGED = [[1, 5, 9], [1, 40, 41, 42, 43, 44, 45, 46, 47], [1, 100, 7, 7, 30], [3], [1, 2, 3, 4, 5, 6]]


def forced_lengths_processor(target, eos, seen=None):
    """Row r ends (EOS is its only choice) at step target[r] - 1 and cannot draw EOS before
    (bench/sampler.py's rule); `seen` collects the rows of each step."""
    from bench.sampler import forced_end

    def proc(logits, rows, step):
        if seen is not None:
            seen.append(rows.tolist())
        return forced_end(logits, target[rows], step, eos)
    return proc


def rows_are_batch_independent() -> bool:
    """Whether this CPU's matmul gives a row the same bits in any batch of >= 4 rows (logprobs.MIN_ROWS)."""
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(64, 48, generator=g), torch.randn(40, 1, 48, generator=g)
    full = torch.nn.functional.linear(x, w)
    return all(torch.equal(torch.nn.functional.linear(x[:k], w), full[:k]) for k in range(4, 40))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, 0, 1.0), (0.8, 10, 0.9), (0.0, 0, 1.0)])
def test_dropping_finished_rows_changes_no_token_and_no_logprob(family, temperature, top_k, top_p):
    m = load_model(FIX / family)
    G, N = 4, 24
    target = torch.tensor([1, 2, 3, 5, 8, 13, 21, 24] * 3 + [24] * 3 + [7, 2, 1, 6, 12, 19, 23, 11, 4, 24, 9, 17, 3])[:20]
    seen = []
    run = lambda drop, log=None: generate(
        m, RAGGED, N, temperature=temperature, top_k=top_k, top_p=top_p, samples_per_prompt=G,
        generator=torch.Generator().manual_seed(5), eos_token_ids=[2], return_prompt_logprobs=True,
        drop_finished=drop, logits_processor=forced_lengths_processor(target, 2, log))
    kept, dropped = run(False), run(True, seen)
    assert torch.equal(dropped.lengths, target) and dropped.finished.all()  # the processor did its job
    # rows really left the batch: the processor saw fewer rows as they ended (never the ended ones)
    sizes = [len(r) for r in seen]
    assert sizes[0] == 20 and sizes[-1] < 20 and sizes == sorted(sizes, reverse=True)
    for step, r in enumerate(seen):  # every row that has not ended is in the batch
        assert set((target > step).nonzero().squeeze(1).tolist()) <= set(r)
    for a, b in [(kept.tokens, dropped.tokens), (kept.mask, dropped.mask), (kept.lengths, dropped.lengths),
                 (kept.finished, dropped.finished), (kept.prompt_logprobs, dropped.prompt_logprobs)]:
        assert torch.equal(a, b)
    if rows_are_batch_independent():  # true on the CPUs we measured: then every bit is the same
        assert torch.equal(kept.logprobs, dropped.logprobs)
    else:
        assert (kept.logprobs - dropped.logprobs).abs().max().item() <= 1e-5


def test_dropping_rows_with_natural_eos_keeps_the_samples(llama):
    """Without a processor: rows end on their own sampled EOS at mixed lengths, same result."""
    first = generate(llama, RAGGED, 30, generator=torch.Generator().manual_seed(0), samples_per_prompt=6)
    eos = [int(t) for t in first.tokens[:, 2].unique()[:6]]  # frequent enough to end rows early
    run = lambda drop: generate(llama, RAGGED, 30, generator=torch.Generator().manual_seed(1), samples_per_prompt=6,
                                eos_token_ids=eos, drop_finished=drop)
    a, b = run(False), run(True)
    assert len(set(b.lengths.tolist())) >= 4 and b.finished.any()  # mixed lengths: some rows dropped early
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.lengths, b.lengths)
    assert (a.logprobs - b.logprobs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_fixed_shape_decode_step_equals_the_default(family, monkeypatch):
    """cuda_graph=True: the fixed-shape step (every cache column a key, masked; batch in powers of
    two) runs eagerly on CPU and samples the same tokens, log-probs equal up to rounding."""
    import sampler
    m = load_model(FIX / family)
    widths = []
    make = sampler.make_static_step
    monkeypatch.setattr(sampler, "make_static_step", lambda model, cache, km, W, dev: widths.append(W) or make(model, cache, km, W, dev))
    target = torch.tensor([3, 20, 1, 9, 14, 2, 20, 6, 11, 5, 17, 8, 20, 4, 7])
    run = lambda graph: generate(m, RAGGED, 20, samples_per_prompt=3, generator=torch.Generator().manual_seed(2),
                                 eos_token_ids=[2], cuda_graph=graph, logits_processor=forced_lengths_processor(target, 2))
    dyn, static = run(False), run(True)
    assert torch.equal(dyn.tokens, static.tokens) and torch.equal(dyn.lengths, static.lengths)
    assert (dyn.logprobs - static.logprobs).abs().max().item() <= 1e-4
    assert widths[0] == 15 and all(w & (w - 1) == 0 for w in widths[1:])  # then powers of two, shrinking
    assert widths == sorted(widths, reverse=True) and widths[-1] >= MIN_ROWS


def test_fixed_shape_forward_equals_the_growing_one(llama):
    """model.forward with a tensor `start`: same logits as the int-start decode step, from the same cache."""
    from model import KVCache
    from sampler import prefill
    prompts = RAGGED[:3]
    a, b = (KVCache(llama.config, 3, 16, torch.float32, "cpu") for _ in range(2))
    with torch.no_grad():
        _, _, pmask = prefill(llama, prompts, a, "cpu")
        prefill(llama, prompts, b, "cpu")
    T0 = pmask.shape[1]
    key_mask = torch.zeros(3, 16, dtype=torch.bool)
    key_mask[:, :T0 + 1] = torch.cat([pmask, torch.ones(3, 1, dtype=torch.bool)], 1)
    tok, pos = torch.tensor([[7], [8], [9]]), pmask.sum(-1, keepdim=True)
    with torch.no_grad():
        grow = llama(tok, key_mask[:, :T0 + 1], positions=pos, cache=a, start=T0)
        fixed = llama(tok, key_mask, positions=pos, cache=b, start=torch.tensor(T0))
    assert (grow - fixed).abs().max().item() <= 1e-5
    assert torch.equal(a.k[0, :, :, :T0 + 1], b.k[0, :, :, :T0 + 1])  # layer 0's keys: the same bits
    assert (a.k[:, :, :, :T0 + 1] - b.k[:, :, :, :T0 + 1]).abs().max().item() <= 1e-5  # then rounding
    assert (b.k[:, :, :, T0 + 1:] == 0).all()  # nothing written past this token's column
    with pytest.raises(ValueError, match="tensor `start`"), torch.no_grad():
        llama(tok, key_mask, cache=b, start=torch.tensor(T0))  # no positions


def test_logits_processor_sees_rows_and_steps(llama):
    calls = []

    def proc(logits, rows, step):
        calls.append((logits.shape[0], rows.tolist(), step))
        return logits
    out = generate(llama, PROMPTS, 5, generator=torch.Generator().manual_seed(0), samples_per_prompt=2,
                   eos_token_ids=[-1], logits_processor=proc)
    assert [c[2] for c in calls] == list(range(5)) and all(c[1] == list(range(6)) and c[0] == 6 for c in calls)
    plain = generate(llama, PROMPTS, 5, generator=torch.Generator().manual_seed(0), samples_per_prompt=2, eos_token_ids=[-1])
    assert torch.equal(out.tokens, plain.tokens)  # an identity processor changes nothing


def test_kv_cache_dtype():
    from sampler import kv_cache_dtype
    assert kv_cache_dtype(torch.device("cpu"), torch.float32) == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):  # only CUDA autocast changes the cache
        assert kv_cache_dtype(torch.device("cpu"), torch.float32) == torch.float32
    assert kv_cache_dtype(torch.device("cpu"), torch.bfloat16) == torch.bfloat16


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_autocast_cache_is_bfloat16_and_graphs_replay_the_eager_fixed_step():
    from sampler import kv_cache_dtype
    m = load_model(FIX / "qwen2", device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert kv_cache_dtype(torch.device("cuda"), torch.float32) == torch.bfloat16
        run = lambda graph: generate(m, RAGGED, 20, samples_per_prompt=4, eos_token_ids=[2],
                                     generator=torch.Generator("cuda").manual_seed(0), cuda_graph=graph)
        eager, graph = run(False), run(True)
    assert torch.isfinite(graph.logprobs).all() and graph.tokens.shape[0] == 20
    same = (eager.tokens == graph.tokens).float().mean().item()
    assert same >= 0.5, same  # bf16: the fixed-shape softmax may round differently and a row part ways
