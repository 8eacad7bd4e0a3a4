import json
from pathlib import Path

import pytest
import torch

from model import load_model
from sampler import Generation, generate, logits_to_logprobs, logits_to_probs

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
