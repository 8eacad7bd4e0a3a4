"""verl's real FSDP engine on CPU: scores prompt + response rows with a tiny model, as verl's actor does.

Launched by test_verl_arm_cq.py as `python verl_cpu_engine.py IN.pt OUT.pt` (a process of its own: verl
reads its platform once, and module-level device names are fixed at import). IN.pt holds
{"model_dir", "rows" (token-id tensors, prompt + response), "temperature", "micro_batch"}; OUT.pt gets
{"rmpad": [...], "no_rmpad": [...]}: per row, the log-probs verl's FSDPEngineWithLMHead returns
(model_output["log_probs"], one per input token), with use_remove_padding on and off.

verl 0.9.1 has no CPU platform (it falls back to 'nvidia'), so this file registers a small one with
verl's set_platform before verl's engine is imported. It lives here, in the tests, never in the
plug-in. The engine runs as verl's actor would: FSDP2 (fully_shard) over a gloo process group of one,
fp32 throughout, attn_implementation "sdpa" instead of FlashAttention 2."""
import os
import sys
from contextlib import nullcontext

import torch
from verl.plugin.platform import PlatformBase, set_platform


class PlatformCPU(PlatformBase):
    """The least verl's FSDP engine needs from a platform, on a CPU."""
    device_name = "cpu"
    vendor_name = "cpu"

    @property
    def device_module(self):
        return torch.cpu

    def is_available(self) -> bool:
        return True

    def current_device(self) -> str:
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index) -> None:
        pass

    def synchronize(self, device_index=None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0):
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    def nvtx_range(self, msg: str):
        return nullcontext()

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "CPU"

    def ray_noset_envvars(self) -> list[str]:
        return []

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self):
        return None


def score(model_dir: str, rows: list[torch.Tensor], temperature: float, micro_batch: int,
          use_remove_padding: bool) -> list[torch.Tensor]:
    """verl's FSDPEngineWithLMHead.infer_batch over rows (prompt + response ids), in the layout the v1
    agent loop writes (agent_loop_tq.py: jagged input_ids, position_ids from 0) -> per-row log-probs."""
    from tensordict import TensorDict
    from verl.trainer.config import CheckpointConfig
    from verl.utils import tensordict_utils as tu
    from verl.workers.config import FSDPEngineConfig, FSDPOptimizerConfig, HFModelConfig
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

    model_config = HFModelConfig(path=model_dir, load_tokenizer=False, use_remove_padding=use_remove_padding,
                                 enable_gradient_checkpointing=False, override_config={"attn_implementation": "sdpa"})
    # forward_only=False: verl's forward-only engines offload to pinned memory, which needs an accelerator
    engine_config = FSDPEngineConfig(strategy="fsdp2", forward_only=False, use_torch_compile=False, model_dtype="fp32",
                                     mixed_precision={"param_dtype": "fp32", "reduce_dtype": "fp32",
                                                      "buffer_dtype": "fp32"})
    engine = FSDPEngineWithLMHead(model_config, engine_config, FSDPOptimizerConfig(lr=1e-6), CheckpointConfig())
    engine.initialize()

    def jagged(xs):
        return torch.nested.as_nested_tensor(xs, layout=torch.jagged)

    data = TensorDict({"input_ids": jagged(rows), "position_ids": jagged([torch.arange(len(r)) for r in rows]),
                       "loss_mask": jagged([torch.ones(len(r)) for r in rows])}, batch_size=[len(rows)])
    tu.assign_non_tensor(data, temperature=temperature, calculate_entropy=True, compute_loss=False,
                         use_remove_padding=use_remove_padding, use_dynamic_bsz=False, use_fused_kernels=False,
                         micro_batch_size_per_gpu=micro_batch, max_token_len_per_gpu=4096)
    with engine.eval_mode():
        out = engine.infer_batch(data, loss_function=None)
    log_probs = out["model_output"]["log_probs"]  # jagged (B, prompt + response): what reaches "log_probs"
    return [log_probs[i].clone() for i in range(len(rows))]


def main(in_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    set_platform(PlatformCPU())
    os.environ.update(MASTER_ADDR="127.0.0.1", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    torch.distributed.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    job = torch.load(in_path)
    try:
        out = {name: score(job["model_dir"], job["rows"], job["temperature"], job["micro_batch"], rmpad)
               for name, rmpad in (("rmpad", True), ("no_rmpad", False))}
    finally:
        torch.distributed.destroy_process_group()
    torch.save(out, out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
