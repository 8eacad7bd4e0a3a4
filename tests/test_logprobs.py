"""The memory-saving paths of the training step (issue 21) give the numbers of the plain ones:
chunked log-probs and entropy (logprobs.chunked_logprobs), logits only at response tokens, the
prefill's prompt log-probs from hidden states, and --grad-checkpoint.

Which results are bit-identical and which only close, on CPU:
  bit-identical   log-probs, their gradients (hidden states and LM head weight), also under bf16
                  autocast; the entropy when a chunk holds the same rows as arm.token_entropy's (up
                  to 1024 rows, so at any small vocabulary); the prefill's prompt log-probs and first
                  token; whole toy runs (metrics, evaluations, weights)
  within 1e-6     the entropy when the chunk is smaller (a large vocabulary): another float32 sum order
  relative
  equal here      --grad-checkpoint's gradients (the same ops recomputed; the test allows float tolerance)"""
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

import arm
import config
import data
import train
from hf import load_model, load_tokenizer
from logprobs import chunk_rows, chunked_logprobs, logits_to_logprobs
from sampler import generate



def full_logits_reference(H, W, T0, n, tok, mask, t, G):
    """The earlier path: logits at every column, log_softmax of the response part, autograd backward."""
    H, W = H.clone().requires_grad_(), W.clone().requires_grad_()
    logits = F.linear(H, W)[:, T0 - 1: T0 - 1 + n]  # (b, n, V)
    lp = logits_to_logprobs(logits, t).gather(-1, tok[..., None]).squeeze(-1)
    ent = arm.token_entropy(logits.detach().float() / t, mask)
    (torch.where(mask, lp, 0.0) * G).sum().backward()
    return lp, ent, H.grad, W.grad


def chunked(H, W, T0, n, tok, mask, t, G, chunk):
    H, W = H.clone().requires_grad_(), W.clone().requires_grad_()
    b, T, _ = H.shape
    at = (torch.arange(b)[:, None] * T + T0 - 1 + torch.arange(n))[mask]  # (M,)
    lp, ent = chunked_logprobs(H.flatten(0, 1), W, at, tok[mask], t, entropy=True, chunk=chunk)
    lp = lp.new_zeros(b, n).masked_scatter(mask, lp)
    (torch.where(mask, lp, 0.0) * G).sum().backward()
    return lp, ent, H.grad, W.grad


@pytest.mark.parametrize("V, t, chunk", [(23, 1.0, None), (23, 0.7, 5), (3000, 1.3, 7), (40, 1.0, 2), (40, 1.0, 1)])
def test_chunked_logprobs_and_gradients_are_bit_identical_to_full_logits(V, t, chunk):
    torch.manual_seed(V)
    b, T0, n, C = 5, 6, 13, 24
    H, W = torch.randn(b, T0 + n, C), torch.randn(V, C) * 0.3
    tok = torch.randint(V, (b, n))
    mask = torch.arange(n)[None] < torch.tensor([13, 1, 7, 13, 4])[:, None]  # ragged rows, one of one token
    G = torch.randn(b, n) * mask  # d loss / d log pi, zero after a row's end
    lp0, ent0, gh0, gw0 = full_logits_reference(H, W, T0, n, tok, mask, t, G)
    lp1, ent1, gh1, gw1 = chunked(H, W, T0, n, tok, mask, t, G, chunk)
    assert torch.equal(lp1[mask], lp0[mask]) and (lp1[~mask] == 0).all()
    assert torch.equal(gh1, gh0) and torch.equal(gw1, gw0)  # chunks of 1 to 3 rows included (padded to 4)
    if (chunk or chunk_rows(V)) >= mask.sum():  # one chunk: arm.token_entropy's sum, bit for bit
        assert torch.equal(ent1, ent0)
    else:  # smaller chunks: another float32 summation order
        assert ent1.item() == pytest.approx(ent0.item(), rel=1e-6)


def test_under_bf16_autocast_the_buffer_is_bf16_and_the_results_those_of_full_logits():
    """train.py's CUDA configuration (float32 weights, bf16 autocast), here with CPU autocast: the logits,
    their buffer and the LM head's matmuls are bf16, the log-softmax float32, as on the full path."""
    torch.manual_seed(0)
    b, T0, n, C, V, t = 5, 6, 13, 24, 3000, 0.8
    H, W = torch.randn(b, T0 + n, C), torch.randn(V, C) * 0.3
    tok, G = torch.randint(V, (b, n)), torch.randn(b, n)
    mask = torch.arange(n)[None] < torch.tensor([13, 1, 7, 13, 4])[:, None]
    outs = []
    for path in ("full", "chunked"):
        h, w = H.clone().requires_grad_(), W.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if path == "full":
                logits = F.linear(h, w)[:, T0 - 1: T0 - 1 + n]
                assert logits.dtype == torch.bfloat16
                lp = logits_to_logprobs(logits, t).gather(-1, tok[..., None]).squeeze(-1)
            else:
                at = (torch.arange(b)[:, None] * (T0 + n) + T0 - 1 + torch.arange(n))[mask]
                lp = chunked_logprobs(h.flatten(0, 1), w, at, tok[mask], t, chunk=7)[0]
                lp = lp.new_zeros(b, n).masked_scatter(mask, lp)
        (torch.where(mask, lp, 0.0) * G).sum().backward()
        outs.append((lp[mask], h.grad, w.grad))
    assert all(torch.equal(x, y) for x, y in zip(*outs)) and outs[0][2].dtype == torch.float32


def test_chunk_size_is_bounded_by_the_vocabulary():
    assert chunk_rows(23) == 1024 and chunk_rows(151936) == 55 and chunk_rows(10 ** 9) == 1
    assert chunk_rows(151936) * 151936 * 4 <= 32 * 2 ** 20  # 32 MiB of float32 logits per chunk


def test_without_a_gradient_no_buffer_and_entropy_alone(tiny, monkeypatch):
    made = []  # sizes of the buffers allocated (new_zeros of the first chunk's logits)
    real = torch.Tensor.new_zeros
    monkeypatch.setattr(torch.Tensor, "new_zeros", lambda self, *a, **k: made.append(a) or real(self, *a, **k))
    W = torch.randn(50, 8, requires_grad=True)  # a model's LM head: requires grad, yet under no_grad no buffer
    with torch.no_grad():
        chunked_logprobs(torch.randn(30, 8), W, torch.tensor([0, 3]), torch.tensor([1, 2]), 1.0, entropy=True)
    assert made == []
    chunked_logprobs(torch.randn(30, 8), W, torch.tensor([0, 3]), torch.tensor([1, 2]), 1.0)
    assert made == [(30, 50)]
    monkeypatch.undo()
    torch.manual_seed(0)
    H, W = torch.randn(30, 8), torch.randn(50, 8)
    rows = torch.tensor([0, 3, 4, 9, 29])
    lp, ent = chunked_logprobs(H, W, rows, None, 1.0, entropy=True, chunk=2)
    assert (lp == 0).all() and ent.item() == pytest.approx(float(arm.token_entropy(F.linear(H[rows], W)[None],
                                                                                   torch.ones(1, 5, dtype=torch.bool))), rel=1e-6)
    lp, ent = chunked_logprobs(H, W, rows[:0], rows[:0], 1.0)  # no row at all
    assert lp.shape == (0,) and ent.item() == 0.0


def cfg_for(tiny, **kw):
    base = dict(model=str(tiny[0]), data=str(tiny[1]), steps=2, prompts_per_step=3, group_size=4, max_new_tokens=8,
                micro_batch=5, eval_prompts=2, eval_n=4, save_every=0, grad_clip=0.0)
    return config.make_config({**base, **kw})


def update_grads(tiny, **kw) -> tuple[torch.Tensor, dict]:
    """Gradients and statistics of one policy update (lr 0) on a fixed rollout with mixed advantages."""
    cfg = cfg_for(tiny, **kw)
    model = load_model(tiny[0])
    probs = data.take_batch(data.load_problems(cfg)[0], 0, cfg.prompts_per_step, 0)
    ro = train.rollout(model, load_tokenizer(tiny[0]), probs, cfg, torch.Generator().manual_seed(0), model.eos_token_ids)
    ref = load_model(tiny[0]).requires_grad_(False) if cfg.kl_coef > 0 else None
    if ref is not None:  # a reference that differs from the policy, so that the KL term has a gradient
        with torch.no_grad():
            ref.lm_head.weight.mul_(1.1)
    stats = train.policy_update(model, ref, torch.optim.SGD(model.parameters(), lr=0.0), ro,
                                torch.linspace(-1, 1, 12).view(3, 4), cfg, step=1)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), stats


@pytest.mark.parametrize("kw", [{}, {"temperature": 0.7, "kl_coef": 0.1}, {"loss_agg": "seq-mean-token-mean"}])
def test_policy_update_chunked_equals_full_logits_bit_for_bit(tiny, kw):
    g0, s0 = update_grads(tiny, chunk_logprobs=False, **kw)
    g1, s1 = update_grads(tiny, **kw)
    assert g0.abs().max() > 0 and torch.equal(g1, g0)
    assert s1 == s0  # loss, ratio, kl, grad_norm, entropy: every statistic
    if kw.get("kl_coef"):
        assert s0["kl"] > 0


def test_grad_checkpoint_gives_the_plain_gradients(tiny):
    g0, s0 = update_grads(tiny)
    g1, s1 = update_grads(tiny, grad_checkpoint=True)
    torch.testing.assert_close(g1, g0, rtol=1e-6, atol=1e-9)
    assert s1["entropy"] == s0["entropy"] and s1["loss"] == pytest.approx(s0["loss"], rel=1e-6)
    g2, _ = update_grads(tiny, grad_checkpoint=True, chunk_logprobs=False)
    torch.testing.assert_close(g2, g0, rtol=1e-6, atol=1e-9)


def test_grad_checkpoint_keeps_only_layer_inputs(tiny):
    """With --grad-checkpoint the forward saves fewer tensors for the backward pass."""
    model = load_model(tiny[0])
    ids = torch.randint(model.config.vocab_size, (2, 12))
    counts = []
    for ckpt in (False, True):
        n = [0]
        with torch.autograd.graph.saved_tensors_hooks(lambda x: n.__setitem__(0, n[0] + x.numel()) or x, lambda x: x):
            model(ids, hidden_states=True, grad_checkpoint=ckpt).sum().backward()
        counts.append(n[0])
    assert counts[1] < counts[0] / 2, counts


def test_prefill_prompt_logprobs_and_first_token_are_those_of_full_logits(tiny):
    model = load_model(tiny[0])
    torch.manual_seed(1)
    for P in (1, 2, 3, 5):  # fewer than 4 prompts: the last column's logits still as in a full pass
        prompts = [torch.randint(3, 290, (k,)).tolist() for k in (7, 3, 9, 1, 5)[:P]]
        out = generate(model, prompts, 4, generator=torch.Generator().manual_seed(0), samples_per_prompt=2,
                       return_prompt_logprobs=True, temperature=0.8)
        T0 = max(map(len, prompts))
        ids = torch.tensor([[0] * (T0 - len(p)) + p for p in prompts])
        mask = ids.new_tensor([[j >= T0 - len(p) for j in range(T0)] for p in prompts]).bool()
        with torch.no_grad():
            logits = model(ids, mask)  # (P, T0, V): the earlier path
        lp = logits_to_logprobs(logits[:, :-1], 0.8).gather(-1, ids[:, 1:, None]).squeeze(-1)
        for p, q in enumerate(prompts):
            k = len(q) - 1
            assert torch.equal(out.prompt_logprobs[p, :k], lp[p, T0 - 1 - k:]) and (out.prompt_logprobs[p, k:] == 0).all()
        first = logits_to_logprobs(logits[:, -1], 0.8).repeat_interleave(2, 0)
        assert torch.equal(out.logprobs[:, 0], first.gather(-1, out.tokens[:, :1]).squeeze(-1))


def toy_argv(out, *extra):
    return ["--steps", "2", "--prompts-per-step", "4", "--group-size", "4", "--eval-prompts", "4", "--eval-n", "4",
            "--micro-batch", "6", "--out", str(out), *extra]


def run_record(out):
    drop = ("time_s", "elapsed_s", "t_rollout", "t_reward", "t_conf", "t_update")
    m = [{k: v for k, v in json.loads(l).items() if k not in drop} for l in (out / "metrics.jsonl").read_text().splitlines()]
    return m, (out / "eval.jsonl").read_text(), (out / "policy" / "model.safetensors").read_bytes()


def test_toy_run_is_bit_identical_with_and_without_chunking(tmp_path):
    assert train.main(toy_argv(tmp_path / "a", "--no-chunk-logprobs")) == 0
    assert train.main(toy_argv(tmp_path / "b")) == 0
    a, b = run_record(tmp_path / "a"), run_record(tmp_path / "b")
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2]  # metrics, evaluations, final weights


def test_resume_with_grad_checkpoint_is_bit_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert train.main(toy_argv(a, "--steps", "3", "--grad-checkpoint", "--save-every", "1", "--keep-checkpoints", "0",
                               "--eval-prompts", "0")) == 0
    shutil.copytree(a / "checkpoints" / "step_000001", b / "checkpoints" / "step_000001")
    assert train.main(["--resume", str(b)]) == 0
    ra, rb = run_record(a), run_record(b)
    assert len(ra[0]) == 3 and ra[0] == rb[0] and ra[2] == rb[2]
    assert json.loads((b / "config.json").read_text())["grad_checkpoint"] is True
