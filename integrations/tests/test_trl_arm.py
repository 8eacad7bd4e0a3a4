"""ARMGRPOTrainer on CPU: real GRPOTrainer runs on a tiny random Qwen2 with the toy's tokenizer (no hub).

Run from the repo root, in the TRL environment: python -m pytest -q integrations/tests/test_trl_arm.py
Add -s to see the time per step with and without ARM."""
import math
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM  # noqa: E402

import arm  # noqa: E402
from trl_arm import ARMGRPOConfig, ARMGRPOTrainer, arm_shift, prompt_token_mask  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
G = 4  # completions per prompt
TEMPERATURE = 0.7  # not 1, so that a log-prob at the wrong temperature shows


def tiny_model_and_tokenizer(seed: int = 0):
    tok = PreTrainedTokenizerFast(tokenizer_file=str(ROOT / "toys" / "original" / "tokenizer.json"),
                                  eos_token="<|endoftext|>", pad_token="<|pad|>")
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return Qwen2ForCausalLM(cfg), tok


def dataset(n: int = 16) -> Dataset:
    # prompts of different lengths, so that left padding and the first-token rule are exercised
    return Dataset.from_dict({"prompt": ["Q: " + "12" * (1 + i % 3) + f"+{i}=?\n" for i in range(n)]})


def reward_digit_sum(completion_ids, **kwargs) -> list[float]:
    """A deterministic reward that a random model gets right about a third of the time."""
    return [float(sum(ids) % 3 == 0) for ids in completion_ids]


def settings(tmp_path, **kw) -> dict:
    base = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", save_strategy="no", logging_steps=1,
                per_device_train_batch_size=12, num_generations=G, max_completion_length=8, max_steps=2,
                learning_rate=1e-3, temperature=TEMPERATURE, seed=0, dataloader_num_workers=0, bf16=False)
    base.update(kw)
    return base


def config(tmp_path, **kw) -> ARMGRPOConfig:
    return ARMGRPOConfig(**settings(tmp_path, **kw))


class Recording(ARMGRPOTrainer):
    """Records, per generation batch, what the trainer trains with and an independent recomputation:
    log-probs from the model's plain forward (logits / T, log_softmax), rewards from the token ids."""

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        p_ids, p_mask, c_ids, c_mask = out["prompt_ids"], out["prompt_mask"], out["completion_ids"], out["completion_mask"]
        ids, mask = torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1)
        with torch.no_grad():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float() / TEMPERATURE  # (B, L, V)
        lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (B, L-1)
        Lp = p_ids.size(1)
        rewards = torch.tensor([float((c_ids[i][c_mask[i].bool()].sum().item()) % 3 == 0) for i in range(len(c_ids))])
        self.records = getattr(self, "records", []) + [{
            "advantages": out["advantages"].clone(), "last": dict(self._arm_last), "rewards": rewards,
            "padded": bool((p_mask == 0).any()),
            "prompt_lp": lp[:, :Lp - 1], "prompt_mask": p_mask[:, 1:].bool() & p_mask[:, :-1].bool(),
            "completion_lp": lp[:, Lp - 1:], "completion_mask": c_mask.bool()}]
        return out


def trl_grpo_advantages(r: torch.Tensor, scale_rewards: str = "group") -> torch.Tensor:
    """TRL's convention, written out: (r - mean) / (sample std + 1e-4) per group, or r - mean
    (scale_rewards="none"). (P, G) -> (P, G)."""
    centred = r - r.mean(1, keepdim=True)
    return centred if scale_rewards == "none" else centred / (r.std(1, correction=1, keepdim=True) + 1e-4)


def expected(rec: dict, args: ARMGRPOConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(A~ the trainer should train with, arm.arm_advantages) from the independent recomputation."""
    R = rec["rewards"].view(-1, G)
    c_o = arm.answer_confidence(rec["completion_lp"], rec["completion_mask"], low_frac=args.low_frac).view(-1, G)
    c_q = arm.prompt_confidence(rec["prompt_lp"], rec["prompt_mask"]).view(-1, G)[:, 0]
    scale = "none" if args.scale_rewards == "none" else "std"
    kw = dict(alpha=args.alpha, all_correct=args.all_correct, shift_rows=args.shift_rows, shift_center=args.shift_center,
              scale=scale)
    arm_adv = arm.arm_advantages(R, c_q, c_o, **kw)
    if args.arm_base == "arm":
        return arm_adv.view(-1), arm_adv.view(-1)
    return (trl_grpo_advantages(R, args.scale_rewards) + arm_adv - arm.grpo_advantages(R, scale=scale)).view(-1), \
        arm_adv.view(-1)


def run(tmp_path, trainer_cls=Recording, **kw):
    model, tok = tiny_model_and_tokenizer()
    args = config(tmp_path, **kw)
    trainer = trainer_cls(model=model, reward_funcs=reward_digit_sum, args=args, train_dataset=dataset(),
                          processing_class=tok)
    trainer.train()
    return trainer


@pytest.mark.parametrize("arm_base,scale_rewards", [("trl", "group"), ("arm", "group"), ("trl", "none"), ("arm", "none")])
def test_trains_with_arm_py_advantages(tmp_path, arm_base, scale_rewards):
    trainer = run(tmp_path, alpha=1.0, arm_base=arm_base, scale_rewards=scale_rewards)
    assert trainer.state.global_step == 2
    assert len(trainer.records) == 2  # one generation batch per step
    for rec in trainer.records:
        want, arm_adv = expected(rec, trainer.args)
        torch.testing.assert_close(rec["last"]["rewards"], rec["rewards"])  # the reward it gated on
        torch.testing.assert_close(rec["advantages"], want, atol=1e-5, rtol=1e-5)
        if arm_base == "arm":  # arm.py's own convention: exactly arm.arm_advantages
            torch.testing.assert_close(rec["advantages"], arm_adv, atol=1e-5, rtol=1e-5)
    assert any(rec["padded"] for rec in trainer.records)  # left padding was there to be left out
    shifted = torch.cat([r["last"]["shift"] for r in trainer.records])
    assert (shifted != 0).any()  # ARM did something on this batch
    logged = [h for h in trainer.state.log_history if "arm/shift_abs_mean" in h]
    assert logged and all(math.isfinite(h["arm/shift_abs_mean"]) for h in logged)
    assert all(0 < h["arm/conf_q_mean"] <= 1 and 0 < h["arm/conf_o_mean"] <= 1 for h in logged)


def test_alpha0_is_trls_grpo(tmp_path):
    """alpha = 0 with arm_base="trl" leaves TRL's advantages bit for bit: sample std, eps 1e-4."""
    trainer = run(tmp_path, alpha=0.0)
    for rec in trainer.records:
        assert torch.equal(rec["advantages"], rec["last"]["trl_advantages"])
        torch.testing.assert_close(rec["advantages"], trl_grpo_advantages(rec["rewards"].view(-1, G)).view(-1))


def test_reuses_trls_old_logprobs(tmp_path):
    """num_iterations=2: TRL computes old_per_token_logps itself; c(o|q) reuses them, c(q) comes from a
    prompt-only forward. The advantages still equal the independent recomputation."""
    trainer = run(tmp_path, alpha=1.0, num_iterations=2, max_steps=2)
    assert len(trainer.records) == 1  # the second step reuses the first generation batch
    for rec in trainer.records:
        torch.testing.assert_close(rec["advantages"], expected(rec, trainer.args)[0], atol=1e-5, rtol=1e-5)


def test_correct_mean_needs_no_prompt_forward(tmp_path):
    trainer = run(tmp_path, alpha=1.0, shift_center="correct-mean", shift_rows="correct")
    for rec in trainer.records:
        assert rec["last"]["c_q"] is None
        torch.testing.assert_close(rec["advantages"], expected(rec, trainer.args)[0], atol=1e-5, rtol=1e-5)


def test_group_split_across_two_processes():
    """Two simulated processes with 6 rows each and G = 4: group 1 is rows 4-7, split 2 | 2. Its only
    correct answer is on process 0 (row 4), yet process 1's rows 6-7 must be shifted: the gate is
    decided on the gathered rewards, then each process keeps its slice."""
    rewards = torch.tensor([0., 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0])  # (12,) = 3 groups of 4
    c_o = torch.linspace(0.2, 0.9, 12)
    c_q = torch.tensor([0.5] * 4 + [0.6] * 4 + [0.7] * 4)
    adv, shift = arm_shift(rewards, c_q, c_o, 4, alpha=1.0)
    process1 = slice(6, 12)
    torch.testing.assert_close(shift[process1][:2], 0.6 - c_o[6:8])  # rows 6, 7: group 1, correct on process 0
    assert (shift[process1][2:] == 0).all()  # group 2 has no correct answer
    torch.testing.assert_close(shift[:4], 0.5 - c_o[:4])
    # what a process deciding on its own rows only would get wrong: rows 6-7 look like an all-wrong group
    assert not (rewards[process1][:2] > 0).any()
    # and each process's slice of the whole-batch result is arm.py on whole groups
    full = arm.arm_advantages(rewards.view(3, 4), c_q.view(3, 4)[:, 0], c_o.view(3, 4), alpha=1.0).view(-1)
    torch.testing.assert_close(adv[process1], full[process1])


def test_unscored_rows_keep_zero():
    rewards = torch.tensor([1., float("nan"), 0, 0])
    adv, shift = arm_shift(rewards, torch.full((4,), 0.5), torch.full((4,), 0.4), 4, alpha=1.0)
    assert adv[1] == 0 and shift[1] == 0 and shift[0] != 0


def test_prompt_token_mask_drops_padding_and_first_token():
    pm = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert prompt_token_mask(pm).tolist() == [[False, False, True, True], [True, True, True, True]]


def test_bad_config_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="shift_rows"):
        config(tmp_path, shift_rows="all")


def test_step_time_with_and_without_arm(tmp_path):
    """The extra forward's cost: 5 steps each of TRL's GRPOTrainer and of ARMGRPOTrainer (alpha=1), same
    seed and settings. Prints TRL's own step_time (generation, scoring and update; the first step, a
    warm-up, left out) and ARM's own work, extra forward included (pytest -s). Only checks that both ran."""
    step, arm_time = {}, []
    for name, cls in (("grpo", trl.GRPOTrainer), ("arm", ARMGRPOTrainer)):
        model, tok = tiny_model_and_tokenizer()
        args = (ARMGRPOConfig if cls is ARMGRPOTrainer else trl.GRPOConfig)(**settings(tmp_path / name, max_steps=5))
        trainer = cls(model=model, reward_funcs=reward_digit_sum, args=args, train_dataset=dataset(), processing_class=tok)
        trainer.train()
        times = [h["step_time"] for h in trainer.state.log_history if "step_time" in h][1:]
        step[name] = sum(times) / len(times)
        arm_time = [h["arm/time"] for h in trainer.state.log_history if "arm/time" in h][1:] or arm_time
    print(f"\nseconds per step (TRL's step_time, steps 2-5): GRPOTrainer {step['grpo']:.4f}, "
          f"ARMGRPOTrainer {step['arm']:.4f}; ARM's own work in it: {sum(arm_time) / len(arm_time):.4f}")
    assert step["grpo"] > 0 and step["arm"] > 0


def test_trl_train_script_runs_on_a_tiny_model(tmp_path):
    """integrations/trl_train.py end to end on CPU: a tiny model folder, plain prompt/answer JSONL, 2 steps."""
    import json

    import trl_train
    model, tok = tiny_model_and_tokenizer()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Q: 1{i}+2{i}=?\n", "answer": str(30 + 2 * i)}) + "\n"
                            for i in range(8)))
    trainer = trl_train.main(["--model", str(tmp_path / "model"), "--data", str(data), "--out", str(tmp_path / "run"),
                              "--steps", "2", "--per-device-batch", "8", "--group-size", "4",
                              "--max-completion-length", "6", "--lr", "1e-3", "--cpu"])
    assert trainer.state.global_step == 2
    assert (tmp_path / "run" / "policy" / "config.json").exists()
    assert trl_train.verifier_reward(["so \\boxed{42}", "\\boxed{41}"], ["42", "42"]) == [1.0, 0.0]


def test_two_real_processes_gate_a_split_group(tmp_path):
    """A real two-process GRPOTrainer step (torch.distributed on CPU, gloo; ~15 s): group 1 spans the
    processes with its correct answers all on process 0 (two_process_run.py). Process 1's rows of that
    group get ARM's shift, its all-wrong group 2 none, and each process trains with its slice of
    TRL's advantages + arm.py's shift on the gathered batch."""
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = Path(__file__).with_name("two_process_run.py")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          str(port), str(script), str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert seen[0]["prompts"][4:] == seen[1]["prompts"][:2] and seen[0]["prompts"][3] != seen[0]["prompts"][4]
    assert seen[0]["rewards_all"] == seen[1]["rewards_all"] == [1.0] * 6 + [0.0] * 6  # gathered, in process order
    rewards, c_q, c_o = (torch.tensor(seen[0][k]) for k in ("rewards_all", "c_q_all", "c_o_all"))
    _, shift = arm_shift(rewards, c_q, c_o, G, alpha=1.0)
    for r in (0, 1):
        local = slice(6 * r, 6 * r + 6)
        torch.testing.assert_close(torch.tensor(seen[r]["advantages"]),
                                   torch.tensor(seen[r]["trl_advantages"]) + shift[local])
    s1 = torch.tensor(seen[1]["advantages"]) - torch.tensor(seen[1]["trl_advantages"])
    torch.testing.assert_close(s1[:2], c_q[6:8] - c_o[6:8])  # group 1 on process 1: all wrong there, shifted
    assert (s1[:2] != 0).all() and (s1[2:] == 0).all()  # group 2: no correct answer anywhere
