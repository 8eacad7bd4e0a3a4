"""c(q) in verl, through verl's own code on CPU (verl installed; ~1 min).

(a) verl's real FSDPEngineWithLMHead (FSDP2, gloo, world size 1; verl_cpu_engine.py, in a process of its
    own) scores a tiny random Qwen2 at T = 0.7; c(q) from its output, as ARMPPOTrainerSync reads it,
    equals arm.prompt_confidence on a plain forward: ragged prompts (1-8 tokens), remove-padding on and off.
(b) End to end through verl's real v1 _compute_old_log_prob, _compute_ref_log_prob and
    _compute_advantage under ARMPPOTrainerSync, on a real TransferQueue (local Ray, one storage unit)
    and on an in-memory stand-in: the actor writes the engine's full-sequence log-probs, the reference
    pass writes its own "log_probs" over them afterwards, and the advantages written back equal arm.py's
    A~ for the paper's form (alpha 1, both conventions), the ablations, and alpha 0 (= verl's grpo).

Tolerances (absolute, rtol 0): the engine's log-probs vs a plain forward 1e-5 (measured 3.1e-6: fp32
round-off on logits of size ~30, FSDP2 and remove-padding packing vs one row at a time); c(q) from the
engine vs arm.py on a plain forward 1e-5 (measured 6e-8); the advantages verl writes back vs arm.py on
the log-probs the actor wrote 1e-6 (measured 1.2e-7), vs arm.py on a plain forward 1e-5 (measured
1.2e-6). alpha 0 is compared exactly (torch.equal) with verl's grpo.

Run from the repo root, in the verl environment: python -m pytest -q integrations/tests/test_verl_arm_cq.py"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
pytest.importorskip("transfer_queue")
from omegaconf import OmegaConf  # noqa: E402
from tensordict import NonTensorStack, TensorDict  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402

import arm  # noqa: E402
import verl_arm  # noqa: E402

T_ROLL = 0.7  # the rollout temperature verl's old-log-prob step passes to the actor
G = 4  # responses per prompt
PROMPT_LENS = [3, 1, 8, 5, 2]  # ragged; a one-token prompt has no predicted token: c(q) = 1
CORRECT = [[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 1, 1]]  # mixed, all-wrong, all-correct
ATOL = 1e-6
LP_ATOL = 1e-5  # per-token log-probs: float32 round-off on logits of size ~30 (a wide init)
VOCAB = 96


def jagged(xs):
    return torch.nested.as_nested_tensor(list(xs), layout=torch.jagged)


@pytest.fixture(scope="module")
def rollout(tmp_path_factory):
    """A tiny random Qwen2 on disk, a rollout (P prompts x G responses, ragged, rows shuffled as verl's
    balancing leaves them), and what verl's engine returns for it (verl_cpu_engine.py, its own process)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    d = tmp_path_factory.mktemp("verl_cq")
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         initializer_range=0.2, tie_word_embeddings=False, architectures=["Qwen2ForCausalLM"])
    model = Qwen2ForCausalLM(config).eval()  # ~0.1 M parameters; a wide init gives peaked, varied log-probs
    model.save_pretrained(d / "model")

    g = torch.Generator().manual_seed(1)

    @torch.no_grad()
    def sample(prefix: torch.Tensor, n: int) -> torch.Tensor:  # n tokens from the model at T_ROLL, as a rollout
        for _ in range(n):
            probs = torch.softmax(model(prefix[None]).logits[0, -1] / T_ROLL, dim=-1)
            prefix = torch.cat([prefix, torch.multinomial(probs, 1, generator=g)])
        return prefix

    # prompts the model finds likely, so that c(q) is far from 0 (a random token's is about 1 / VOCAB)
    prompts = [sample(torch.randint(0, VOCAB, (1,), generator=g), n - 1) for n in PROMPT_LENS]
    perm = torch.randperm(len(PROMPT_LENS) * G, generator=g).tolist()
    rows = []
    for i in perm:  # row i of the unshuffled (P, G) layout
        p, k = divmod(i, G)
        n = int(torch.randint(1, 7, (1,), generator=g))
        rows.append({"p": p, "k": k, "prompt": prompts[p], "correct": float(CORRECT[p][k]),
                     "response": sample(prompts[p], n)[len(prompts[p]):]})
    ids = [torch.cat([r["prompt"], r["response"]]) for r in rows]
    torch.save({"model_dir": str(d / "model"), "rows": ids, "temperature": T_ROLL, "micro_batch": 4}, d / "in.pt")
    script = Path(__file__).with_name("verl_cpu_engine.py")
    run = subprocess.run([sys.executable, str(script), str(d / "in.pt"), str(d / "out.pt")], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    engine = torch.load(d / "out.pt")

    with torch.no_grad():  # the reference: a plain forward, one row at a time, logits / T
        plain = []
        for x in ids:
            logp = torch.log_softmax(model(x[None]).logits[0].float() / T_ROLL, dim=-1)
            plain.append(logp[:-1].gather(-1, x[1:, None])[:, 0])  # position j: log pi(token j+1 | <= j)
    return {"rows": rows, "ids": ids, "engine": engine, "plain": plain}


def by_arm_py(rollout, *, alpha: float, low_frac: float = 0.2, source: str = "plain", **kw) -> dict:
    """arm.py on the unshuffled (P, G) layout, back in row order (B,): A~ (arm_advantages), A
    (grpo_advantages), c(q) per row. source: the log-probs, "plain" (a plain forward) or "engine"
    (verl's engine, remove-padding on: what the actor writes in the (b) tests)."""
    rows = rollout["rows"]
    plain = rollout["plain"] if source == "plain" else [x[:-1] for x in rollout["engine"]["rmpad"]]
    P = len(PROMPT_LENS)
    n_q = torch.tensor([len(r["prompt"]) - 1 for r in rows])  # predicted prompt tokens per row
    T_q, T_o = max(1, int(n_q.max())), max(len(r["response"]) for r in rows)
    lp_q, lp_o = torch.zeros(P, T_q), torch.zeros(P, G, T_o)
    m_q, m_o = torch.zeros(P, T_q, dtype=torch.bool), torch.zeros(P, G, T_o, dtype=torch.bool)
    r_pg = torch.zeros(P, G)
    for row, lp in zip(rows, plain):
        p, k, n, m = row["p"], row["k"], len(row["prompt"]) - 1, len(row["response"])
        lp_q[p, :n], m_q[p, :n] = lp[:n], True  # prompt tokens 2..n (definition 3)
        lp_o[p, k, :m], m_o[p, k, :m] = lp[n:n + m], True  # the response's sampled tokens (definition 2)
        r_pg[p, k] = row["correct"]
    c_q = arm.prompt_confidence(lp_q, m_q)  # (P,)
    c_o = arm.answer_confidence(lp_o.view(P * G, T_o), m_o.view(P * G, T_o), low_frac=low_frac).view(P, G)
    a = arm.arm_advantages(r_pg, c_q, c_o, alpha=alpha, **kw)
    at = [(row["p"], row["k"]) for row in rows]
    return {"arm": torch.stack([a[p, k] for p, k in at]),
            "grpo": torch.stack([arm.grpo_advantages(r_pg)[p, k] for p, k in at]),
            "c_q": torch.stack([c_q[p] for p, _ in at])}


def lens(rollout):
    return (torch.tensor([len(r["prompt"]) for r in rollout["rows"]]),
            torch.tensor([len(r["response"]) for r in rollout["rows"]]))


# ------------------------------------------------------------------ (a) verl's engine -> c(q)

@pytest.mark.parametrize("layout", ["rmpad", "no_rmpad"])
def test_engine_cq_equals_arm_py(rollout, layout):
    """c(q) read from the log-probs verl's FSDP engine returns (remove-padding on or off) equals
    arm.prompt_confidence on a plain forward, row by row and as a group's value."""
    got = rollout["engine"][layout]
    for lp_engine, lp_plain, x in zip(got, rollout["plain"], rollout["ids"]):
        assert lp_engine.shape == x.shape  # one log-prob per input token: prompt positions included
        torch.testing.assert_close(lp_engine[:-1], lp_plain, atol=LP_ATOL, rtol=0)
    prompt_lens, response_lens = lens(rollout)
    one_per_row = np.array([f"row{i}" for i in range(len(got))], dtype=object)
    uid = np.array([f"q{r['p']}" for r in rollout["rows"]], dtype=object)
    want = by_arm_py(rollout, alpha=1.0)["c_q"]
    per_row = verl_arm.prompt_conf_from_log_probs(jagged(got), prompt_lens, response_lens, one_per_row)
    per_group = verl_arm.prompt_conf_from_log_probs(jagged(got), prompt_lens, response_lens, uid)
    torch.testing.assert_close(per_row, want, atol=LP_ATOL, rtol=0)
    torch.testing.assert_close(per_group, want, atol=LP_ATOL, rtol=0)
    assert per_group[prompt_lens == 1].eq(1).all() and (per_group < 1).sum() > 0
    print(f"\n[{layout}] max |log-prob engine - plain| = "
          f"{max((e[:-1] - p).abs().max().item() for e, p in zip(got, rollout['plain'])):.2e}, "
          f"max |c(q) engine - arm.py| = {(per_group - want).abs().max().item():.2e} "
          f"(row by row {(per_row - want).abs().max().item():.2e}; c(q) in [{want.min():.3f}, {want.max():.3f}])")


def test_response_only_log_probs_are_refused(rollout):
    """A verl whose actor returned response-only log-probs (slicing elsewhere) stops with one line."""
    prompt_lens, response_lens = lens(rollout)
    cut = jagged(lp[len(r["prompt"]) - 1:-1] for lp, r in zip(rollout["engine"]["rmpad"], rollout["rows"]))
    with pytest.raises(RuntimeError, match="do not cover prompt \\+ response"):
        verl_arm.prompt_conf_from_log_probs(cut, prompt_lens, response_lens, np.arange(len(prompt_lens)))


# ------------------------------------------------------------------ (b) verl's trainer steps, end to end

class InMemoryTQ:
    """The TransferQueue calls verl's trainer steps make (kv_batch_get / kv_batch_put), over one
    TensorDict: the whole batch, in the order it was put."""

    def __init__(self):
        self.keys, self.store = [], None

    def kv_batch_put(self, keys, partition_id, fields=None, tags=None):
        if list(keys) != self.keys:  # a new batch: the stand-in holds one at a time
            self.keys, self.store = list(keys), fields.clone()
        else:
            self.store.update(fields)
        return KVBatchMeta(keys=list(keys), tags=tags or [{} for _ in keys], partition_id=partition_id)

    def kv_batch_get(self, keys, partition_id, select_fields=None):
        assert list(keys) == self.keys, "the stand-in serves whole batches in the order they were put"
        return self.store.select(*[f for f in select_fields if f in self.store.keys()])


@pytest.fixture(scope="module")
def real_tq():
    """verl's TransferQueue, started as verl's TaskRunner does (tq.init) on a local Ray instance.
    Issue 28 reports a hang under local Ray with num_cpus=2 and two storage units; 4 CPUs and one unit run."""
    ray = pytest.importorskip("ray")
    import transfer_queue
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        transfer_queue.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
        yield transfer_queue
        transfer_queue.close()
    finally:
        ray.shutdown()


class Worker:
    """verl's actor (or reference) worker group as the trainer steps call it: it writes its jagged
    full-sequence "log_probs" (and "entropy") to the TransferQueue under the batch's keys."""

    def __init__(self, tq, log_probs: list[torch.Tensor]):
        self.tq, self.log_probs, self.calls = tq, log_probs, []

    def compute_log_prob(self, batch):
        self.calls.append(dict(batch.extra_info))
        fields = TensorDict({"log_probs": jagged(self.log_probs), "entropy": jagged(torch.zeros_like(x)
                                                                                    for x in self.log_probs)},
                            batch_size=len(batch))
        self.tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id, fields=fields)
        return batch

    compute_ref_log_prob = compute_log_prob


def run_steps(rollout, tq, monkeypatch, run: str, adv_estimator: str = "arm", trainer_cls=None, **arm_cfg):
    """One batch through verl's real old-log-prob, reference and advantage steps -> (advantages (B, T)
    padded, metrics, the TransferQueue's arm_prompt_conf)."""
    from verl.trainer.ppo.v1 import trainer_base
    monkeypatch.setattr(trainer_base, "tq", tq)
    rows = rollout["rows"]
    B, T = len(rows), max(len(r["response"]) for r in rows)
    keys = [f"{run}-q{r['p']}_{r['k']}_0" for r in rows]  # verl's {uid}_{session}_{output index}

    def reward(r):  # the outcome reward on the response's last token, as verl's reward loop writes rm_scores
        x = torch.zeros(len(r["response"]))
        x[-1] = r["correct"]
        return x

    fields = TensorDict({"prompts": jagged(r["prompt"] for r in rows), "responses": jagged(r["response"] for r in rows),
                         "input_ids": jagged(rollout["ids"]),
                         "response_mask": jagged(torch.ones(len(r["response"]), dtype=torch.int64) for r in rows),
                         "rm_scores": jagged(reward(r) for r in rows),
                         "uid": NonTensorStack(*[f"q{r['p']}" for r in rows])}, batch_size=B)
    tags = [{"prompt_len": len(r["prompt"]), "response_len": len(r["response"])} for r in rows]
    tq.kv_batch_put(keys=keys, partition_id="train", fields=fields, tags=tags)
    batch = KVBatchMeta(keys=keys, tags=tags, partition_id="train")

    cls = trainer_cls or verl_arm.trainer_class()
    trainer = cls.__new__(cls)  # the three steps run; no workers, no Ray actors of verl's
    trainer.config = OmegaConf.create({
        "algorithm": {"adv_estimator": adv_estimator, "use_kl_in_reward": False, "gamma": 1.0, "lam": 1.0,
                      "norm_adv_by_std_in_grpo": True, "arm": arm_cfg},
        "actor_rollout_ref": {"rollout": {"n": G, "temperature": T_ROLL, "calculate_log_probs": False},
                              "actor": {"loss_agg_mode": "token-mean", "loss_scale_factor": None}},
        "trainer": {"v1": {"trainer_mode": "sync"}}})
    actor = Worker(tq, rollout["engine"]["rmpad"])  # verl's engine output: what the actor writes
    ref = Worker(tq, [x - 0.5 for x in rollout["engine"]["rmpad"]])  # another policy's log-probs
    trainer.actor_rollout_wg, trainer.ref_policy_wg, trainer.ref_in_actor = actor, ref, False
    metrics = {}
    batch = trainer._compute_old_log_prob(batch, metrics)
    assert actor.calls[0]["temperature"] == T_ROLL  # c(q) and c(o|q) at the rollout temperature
    batch = trainer._compute_ref_log_prob(batch, metrics)
    after_ref = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["log_probs", verl_arm.PROMPT_CONF])
    torch.testing.assert_close(after_ref["log_probs"].values(), jagged(ref.log_probs).values())  # overwritten
    batch = trainer._compute_advantage(batch, metrics)
    got = tq.kv_batch_get(keys=keys, partition_id="train", select_fields=["advantages"])["advantages"]
    return torch.nested.to_padded_tensor(got, 0.0, output_size=(B, T)), metrics, after_ref.get(verl_arm.PROMPT_CONF)


def response_mask(rollout) -> torch.Tensor:
    rows = rollout["rows"]
    T = max(len(r["response"]) for r in rows)
    return (torch.arange(T)[None] < torch.tensor([len(r["response"]) for r in rows])[:, None]).float()


CASES = {  # name: (arm settings, arm.py's keywords) at alpha 1 unless given
    "paper": ({"base": "arm"}, {}),
    "correct-rows": ({"base": "arm", "shift_rows": "correct"}, {"shift_rows": "correct"}),
    "correct-mean": ({"base": "arm", "shift_center": "correct-mean"}, {"shift_center": "correct-mean"}),
    "both": ({"base": "arm", "shift_rows": "correct", "shift_center": "correct-mean"},
             {"shift_rows": "correct", "shift_center": "correct-mean"}),
    "all-correct-grpo": ({"base": "arm", "all_correct": "grpo"}, {"all_correct": "grpo"}),
}


@pytest.fixture(params=["transfer_queue", "in_memory"])
def tq(request):
    return request.getfixturevalue("real_tq") if request.param == "transfer_queue" else InMemoryTQ()


@pytest.mark.parametrize("case", list(CASES))
def test_steps_give_arm_py_advantages(rollout, tq, monkeypatch, case):
    cfg, kw = CASES[case]
    got, metrics, conf = run_steps(rollout, tq, monkeypatch, f"{case}-{type(tq).__name__}", alpha=1.0, **cfg)
    want = by_arm_py(rollout, alpha=1.0, source="engine", **kw)
    torch.testing.assert_close(got, want["arm"][:, None] * response_mask(rollout), atol=ATOL, rtol=0)
    plain = by_arm_py(rollout, alpha=1.0, **kw)["arm"]  # the whole chain: a plain forward -> arm.py
    torch.testing.assert_close(got, plain[:, None] * response_mask(rollout), atol=LP_ATOL, rtol=0)
    if cfg.get("shift_center", "prompt") == "prompt":  # c(q) was stored before the reference pass, per uid
        torch.testing.assert_close(conf, want["c_q"], atol=ATOL, rtol=0)
        assert metrics["arm/conf_q_mean"] == pytest.approx(want["c_q"].mean().item(), abs=ATOL)
    else:
        assert conf is None and "arm/conf_q_mean" not in metrics
    print(f"\n[{case}] max |A~ verl - arm.py| = {(got - want['arm'][:, None] * response_mask(rollout)).abs().max():.2e}"
          f" (from a plain forward {(got - plain[:, None] * response_mask(rollout)).abs().max():.2e})")


def test_steps_paper_form_in_verls_convention(rollout, tq, monkeypatch):
    """base=verl (the default): verl's grpo (sample std) + arm.py's shift alpha (c(q) - c(o|q))."""
    got, _, _ = run_steps(rollout, tq, monkeypatch, f"verl-{type(tq).__name__}", alpha=1.0)
    grpo, _, _ = run_steps(rollout, tq, monkeypatch, f"grpo-{type(tq).__name__}", adv_estimator="grpo")
    want = by_arm_py(rollout, alpha=1.0, source="engine")
    torch.testing.assert_close(got, grpo + (want["arm"] - want["grpo"])[:, None] * response_mask(rollout),
                               atol=ATOL, rtol=0)
    assert (got != grpo).any()


def test_steps_alpha0_is_verls_grpo(rollout, tq, monkeypatch):
    """alpha 0 through ARMPPOTrainerSync equals verl's own sync trainer with adv_estimator=grpo, exactly."""
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
    got, _, _ = run_steps(rollout, tq, monkeypatch, f"a0-{type(tq).__name__}", alpha=0.0)
    grpo, _, _ = run_steps(rollout, tq, monkeypatch, f"verlgrpo-{type(tq).__name__}", adv_estimator="grpo",
                           trainer_cls=PPOTrainerSync)
    assert torch.equal(got, grpo)
