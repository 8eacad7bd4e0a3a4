"""The verl "arm" estimator against arm.py on synthetic batches, and the plug-in's set-up checks (verl
installed; no GPU). c(q) through verl's engine and trainer steps: test_verl_arm_cq.py.

Run from the repo root, in the verl environment: python -m pytest -q integrations/tests/test_verl_arm.py"""
import numpy as np
import pytest
import torch

core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402

import arm  # noqa: E402
import verl_arm  # noqa: E402

G, T = 4, 7  # responses per prompt, response tokens


def synthetic_batch(seed: int = 0, P: int = 5):
    """P prompts x G responses, rows shuffled (verl groups by uid, not by position), ragged lengths,
    the outcome reward on the last valid token; groups: mixed, all-wrong, all-correct, mixed, mixed."""
    g = torch.Generator().manual_seed(seed)
    correct = torch.tensor([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 1, 0]])[:P].float()
    lengths = torch.randint(1, T + 1, (P * G,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).float()  # (B, T)
    rewards = torch.zeros(P * G, T)
    rewards[torch.arange(P * G), lengths - 1] = correct.view(-1)
    old_lp = -torch.rand(P * G, T, generator=g) * 3 * mask  # (B, T)
    c_q = torch.rand(P, generator=g) * 0.5 + 0.25  # (P,)
    uid = np.array([f"q{p}" for p in range(P) for _ in range(G)], dtype=object)
    perm = torch.randperm(P * G, generator=g)
    return {"rewards": rewards[perm], "mask": mask[perm], "old_lp": old_lp[perm], "uid": uid[perm.numpy()],
            "prompt_conf": c_q.repeat_interleave(G)[perm], "c_q": c_q, "perm": perm, "correct": correct}


def by_arm_py(b, alpha: float, low_frac: float = 0.2, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    """arm.arm_advantages and arm.grpo_advantages on the unshuffled (P, G) layout, back in row order (B,)."""
    P = b["correct"].shape[0]
    inv = torch.argsort(b["perm"])
    c_o = arm.answer_confidence(b["old_lp"][inv], b["mask"][inv].bool(), low_frac=low_frac).view(P, G)
    a = arm.arm_advantages(b["correct"], b["c_q"], c_o, alpha=alpha, **kw).view(-1)[b["perm"]]
    return a, arm.grpo_advantages(b["correct"]).view(-1)[b["perm"]]


def verl_grpo(b) -> torch.Tensor:
    adv, _ = core_algos.compute_grpo_outcome_advantage(b["rewards"], b["mask"], b["uid"])
    return adv


def estimate(b, **arm_cfg) -> torch.Tensor:
    adv, ret = verl_arm.compute_arm_outcome_advantage(b["rewards"], b["mask"], b["uid"], config={"arm": arm_cfg},
                                                      old_log_probs=b["old_lp"], prompt_conf=b["prompt_conf"])
    assert torch.equal(adv, ret)
    return adv


def test_registered_in_verl():
    assert core_algos.get_adv_estimator_fn("arm") is verl_arm.compute_arm_outcome_advantage


@pytest.mark.parametrize("alpha", [0.5, 3.0])
def test_base_arm_equals_arm_py(alpha):
    b = synthetic_batch()
    want, _ = by_arm_py(b, alpha)
    torch.testing.assert_close(estimate(b, alpha=alpha, base="arm"), want[:, None] * b["mask"])


def test_base_verl_is_verls_grpo_plus_arm_shift():
    b = synthetic_batch(1)
    a, grpo = by_arm_py(b, 1.0)
    torch.testing.assert_close(estimate(b, alpha=1.0), verl_grpo(b) + (a - grpo)[:, None] * b["mask"])


def test_alpha0_is_verls_grpo():
    b = synthetic_batch(2)
    assert torch.equal(estimate(b, alpha=0.0), verl_grpo(b))


@pytest.mark.parametrize("variant", [dict(all_correct="grpo"), dict(shift_rows="correct"),
                                     dict(shift_rows="correct", shift_center="correct-mean"), dict(low_frac=1.0)])
def test_variants_equal_arm_py(variant):
    b = synthetic_batch(3)
    want, _ = by_arm_py(b, 2.0, **variant)
    torch.testing.assert_close(estimate(b, alpha=2.0, base="arm", **variant), want[:, None] * b["mask"])


def test_correct_mean_needs_no_prompt_conf():
    b = synthetic_batch(4)
    adv, _ = verl_arm.compute_arm_outcome_advantage(b["rewards"], b["mask"], b["uid"],
                                                    config={"arm": {"shift_center": "correct-mean", "base": "arm"}},
                                                    old_log_probs=b["old_lp"])
    torch.testing.assert_close(adv, by_arm_py(b, 1.0, shift_center="correct-mean")[0][:, None] * b["mask"])


def test_verl_alone_passes_no_old_logprobs():
    """What the hook is for: verl's own compute_advantage calls a custom estimator without old log-probs."""
    b = synthetic_batch()
    data = DataProto.from_dict(tensors={"token_level_rewards": b["rewards"], "response_mask": b["mask"],
                                        "old_log_probs": b["old_lp"]},
                               non_tensors={"uid": b["uid"]})
    with pytest.raises(ValueError, match="needs old_log_probs"):
        compute_advantage(data, adv_estimator="arm", config={"arm": {"shift_center": "correct-mean"}})


def test_hook_step_passes_old_logprobs_and_logs():
    b = synthetic_batch(5)
    data = DataProto.from_dict(tensors={"token_level_rewards": b["rewards"], "response_mask": b["mask"],
                                        "old_log_probs": b["old_lp"], "arm_prompt_conf": b["prompt_conf"]},
                               non_tensors={"uid": b["uid"]})
    metrics = {}
    out = verl_arm.arm_compute_step(data, config={"arm": {"alpha": 1.0, "base": "arm"}}, metrics=metrics)
    torch.testing.assert_close(out.batch["advantages"], by_arm_py(b, 1.0)[0][:, None] * b["mask"])
    assert metrics["arm/shift_abs_mean"] > 0 and 0 < metrics["arm/conf_o_mean"] <= 1


def test_prompt_center_without_c_q_is_one_line():
    b = synthetic_batch()
    with pytest.raises(ValueError, match="shift_center='prompt' needs c\\(q\\)"):
        verl_arm.compute_arm_outcome_advantage(b["rewards"], b["mask"], b["uid"], config={}, old_log_probs=b["old_lp"])


def test_unknown_setting_is_one_line():
    with pytest.raises(ValueError, match="algorithm.arm"):
        verl_arm.arm_settings({"arm": {"alpah": 1.0}})


def test_trainer_hook_through_verls_own_advantage_step(monkeypatch):
    """ARMPPOTrainerSync._compute_advantage runs verl's real v1 _compute_advantage (rewards, KL switch,
    padding, write-back) over an in-memory stand-in for the TransferQueue; the advantages written back
    equal arm.py's, and verl's compute step is restored afterwards."""
    pytest.importorskip("transfer_queue")
    from omegaconf import OmegaConf
    from tensordict import NonTensorStack, TensorDict
    from verl.trainer.ppo.v1 import get_trainer_cls, trainer_base
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    b = synthetic_batch(6)
    lens = b["mask"].sum(1).long()

    def nested(x):  # (B, T) padded -> jagged rows, as verl keeps them in the TransferQueue
        return torch.nested.as_nested_tensor([x[i, :lens[i]] for i in range(len(x))], layout=torch.jagged)

    store = TensorDict({"response_mask": nested(b["mask"]), "rm_scores": nested(b["rewards"]),
                        "old_log_probs": nested(b["old_lp"]), "uid": NonTensorStack(*b["uid"].tolist())},
                       batch_size=[len(lens)])
    fake_tq = type("FakeTQ", (), {
        "kv_batch_get": staticmethod(lambda keys, partition_id, select_fields:
                                     store.select(*[f for f in select_fields if f in store.keys()])),
        "kv_batch_put": staticmethod(lambda keys, partition_id, fields: store.update(fields))})
    monkeypatch.setattr(trainer_base, "tq", fake_tq)

    class Meta(list):  # verl's KVBatchMeta: row keys and a partition
        partition_id = "train"
        keys = property(lambda self: list(self))
        extra_info = {}

    cls = verl_arm.trainer_class()
    assert issubclass(cls, PPOTrainerSync)
    trainer = cls.__new__(cls)  # only _compute_advantage runs: no workers, no Ray
    trainer.config = OmegaConf.create({
        "algorithm": {"adv_estimator": "arm", "use_kl_in_reward": False, "gamma": 1.0, "lam": 1.0,
                      "norm_adv_by_std_in_grpo": True, "arm": {"alpha": 1.0, "shift_center": "correct-mean",
                                                               "base": "arm"}},
        "actor_rollout_ref": {"rollout": {"n": G}}})
    original = trainer_base.compute_advantage_for_multi_trajectories
    metrics = {}
    trainer._compute_advantage(Meta(f"k{i}_0_0" for i in range(len(lens))), metrics)  # verl's {uid}_{session}_{i}
    assert trainer_base.compute_advantage_for_multi_trajectories is original
    got = torch.nested.to_padded_tensor(store["advantages"], 0.0, output_size=(len(lens), T))
    want = by_arm_py(b, 1.0, shift_center="correct-mean")[0][:, None] * b["mask"]
    torch.testing.assert_close(got, want)
    assert metrics["arm/shift_abs_mean"] > 0

    monkeypatch.setitem(trainer_base.TRAINER_REGISTRY, "sync", PPOTrainerSync)
    verl_arm.setup()
    assert get_trainer_cls("sync").__name__ == "ARMPPOTrainerSync"


def test_setup_hook_registers_inside_ray_workers():
    """verl builds its trainer inside a Ray actor: verl_arm.setup as Ray's worker_process_setup_hook
    registers the estimator and the trainer there (a local one-CPU Ray instance, ~15 s)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("transfer_queue")
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([os.path.dirname(here), os.path.dirname(os.path.dirname(here))])
    ray.init(num_cpus=1, include_dashboard=False, runtime_env={"worker_process_setup_hook": "verl_arm.setup",
                                                                "env_vars": {"PYTHONPATH": path}})
    try:
        @ray.remote
        def probe():
            from verl.trainer.ppo import core_algos
            from verl.trainer.ppo.v1 import get_trainer_cls
            return core_algos.get_adv_estimator_fn("arm").__name__, get_trainer_cls("sync").__name__

        assert ray.get(probe.remote()) == ("compute_arm_outcome_advantage", "ARMPPOTrainerSync")
    finally:
        ray.shutdown()


def test_readme_example_config_passes_verls_validation():
    """The README's verl command, as Hydra overrides: it composes and passes verl's validate_config
    (no GPU needed for that; the run itself is not tested here)."""
    import os

    from hydra import compose, initialize_config_dir
    import verl.trainer.main_ppo as main_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    overrides = ["algorithm.adv_estimator=arm", "+algorithm.arm.alpha=1.0",
                 "actor_rollout_ref.model.path=Qwen/Qwen2.5-7B-Instruct", "actor_rollout_ref.rollout.name=vllm",
                 "actor_rollout_ref.rollout.n=8", "data.train_batch_size=256",
                 "actor_rollout_ref.actor.ppo_mini_batch_size=64",
                 "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=4",
                 "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=8",
                 "trainer.n_gpus_per_node=8", "trainer.nnodes=1",
                 "+ray_kwargs.ray_init.runtime_env.worker_process_setup_hook=verl_arm.setup",
                 "+ray_kwargs.ray_init.runtime_env.env_vars.PYTHONPATH=/repo/integrations:/repo"]
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(main_ppo.__file__), "config"), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    assert cfg.trainer.use_v1 and cfg.trainer.v1.trainer_mode == "sync"  # the mode setup() hooks
    assert verl_arm.arm_settings(cfg.algorithm)["shift_center"] == "prompt"  # the paper's form, by default
    assert verl_arm.needs_prompt_conf(cfg)
    verl_arm.check_config(cfg)  # what ARMPPOTrainerSync checks first
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))


def readme_config(*extra: str):
    """verl's ppo_trainer config with the README's ARM settings and `extra` Hydra overrides."""
    import os

    from hydra import compose, initialize_config_dir
    import verl.trainer.main_ppo as main_ppo
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(main_ppo.__file__), "config"), version_base=None):
        return compose(config_name="ppo_trainer", overrides=["algorithm.adv_estimator=arm", *extra])


def test_bypass_mode_is_refused_in_one_line():
    """rollout_correction.bypass_mode skips the actor's pass that gives c(q): refused for the paper's
    form, allowed for correct-mean (no c(q) needed)."""
    cfg = readme_config("algorithm.rollout_correction.bypass_mode=true")
    with pytest.raises(ValueError, match="algorithm.rollout_correction.bypass_mode=true"):
        verl_arm.check_config(cfg)
    verl_arm.check_config(readme_config("algorithm.rollout_correction.bypass_mode=true",
                                        "+algorithm.arm.shift_center=correct-mean"))


@pytest.mark.parametrize("mode", ["separate_async", "colocate_async"])
def test_unhooked_trainer_modes_refuse_arm(monkeypatch, mode):
    """After setup, verl's other v1 trainer modes refuse adv_estimator=arm when built, in one line
    naming the setting (before any worker starts); with another estimator they are verl's own."""
    pytest.importorskip("transfer_queue")
    from verl.trainer.ppo.v1 import get_trainer_cls, trainer_base
    for name, cls in list(trainer_base.TRAINER_REGISTRY.items()):
        monkeypatch.setitem(trainer_base.TRAINER_REGISTRY, name, cls)  # restored afterwards
    verl_arm.setup()
    cls = get_trainer_cls(mode)
    assert cls.__name__.startswith("ARMRefuses") and get_trainer_cls("sync").__name__ == "ARMPPOTrainerSync"
    with pytest.raises(ValueError, match=f"trainer.v1.trainer_mode={mode} is not hooked"):
        cls(readme_config(f"trainer.v1.trainer_mode={mode}"))


def test_other_verl_versions_fail_at_setup(monkeypatch):
    """A verl outside VERL_PROVEN, or one whose old-log-prob step no longer slices the actor's
    full-sequence log_probs itself, stops trainer_class() (so setup()) in one line."""
    pytest.importorskip("transfer_queue")
    import verl
    from verl.trainer.ppo.v1 import trainer_base
    verl_arm.check_verl()  # this one passes
    monkeypatch.setattr(verl, "__version__", "0.10.0")
    with pytest.raises(RuntimeError, match="proven on verl 0.9.1, found 0.10.0"):
        verl_arm.trainer_class()
    monkeypatch.undo()

    def sliced_elsewhere(self, batch, metrics):  # a trainer that gets response-only log-probs
        data = trainer_base.tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                                            select_fields=["log_probs"])
        data["old_log_probs"] = data.pop("log_probs")
        return batch

    monkeypatch.setattr(trainer_base.PPOTrainer, "_compute_old_log_prob", sliced_elsewhere)
    with pytest.raises(RuntimeError, match="no longer slices"):
        verl_arm.trainer_class()


def test_several_outputs_per_session_are_refused():
    """verl's grpo scores only each session's last output when an agent loop gives several; ARM says so."""
    b = synthetic_batch(7)
    data = DataProto.from_dict(tensors={"token_level_rewards": b["rewards"], "response_mask": b["mask"],
                                        "old_log_probs": b["old_lp"], "arm_prompt_conf": b["prompt_conf"]},
                               non_tensors={"uid": b["uid"]})
    keys = [f"{u}_{i}_0" for i, u in enumerate(b["uid"])]
    verl_arm.arm_compute_step(data, batch_keys=keys, config={})  # one output per session: fine
    keys[3] = keys[3][:-1] + "1"
    with pytest.raises(ValueError, match="several outputs"):
        verl_arm.arm_compute_step(data, batch_keys=keys, config={})


def test_prompt_conf_reads_tokens_2_to_n_of_each_prompt():
    """verl's full-sequence layout: position j holds log pi(token j+1 | <= j). c(q) is arm.prompt_confidence
    over prompt tokens 2..n, the mean over a uid's rows; dense rows (verl stacks equal lengths) work too."""
    lp = torch.tensor([[-0.1, -0.3, -9.0, -9.0, -9.0], [-0.2, -0.4, -9.0, -9.0, -9.0], [-0.7, -9.0, -9.0, -9.0, -9.0]])
    prompt_lens, response_lens = torch.tensor([3, 3, 2]), torch.tensor([2, 2, 3])
    got = verl_arm.prompt_conf_from_log_probs(lp, prompt_lens, response_lens, np.array(["a", "a", "b"], dtype=object))
    row = arm.prompt_confidence(lp[:, :2], torch.tensor([[True, True], [True, True], [True, False]]))
    torch.testing.assert_close(got, torch.stack([row[:2].mean(), row[:2].mean(), row[2]]))
    one = verl_arm.prompt_conf_from_log_probs(lp[:1], torch.tensor([1]), torch.tensor([4]), np.array(["c"]))
    assert one.item() == 1.0  # a one-token prompt has nothing predicted: c(q) = 1 (definition 3)
