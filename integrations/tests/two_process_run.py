"""One real two-process GRPOTrainer step on CPU, launched by test_trl_arm.py with
`python -m torch.distributed.run --nproc_per_node 2 two_process_run.py OUT_DIR`.

6 completions per process, G = 4: the global batch is 3 groups, and group 1 (global rows 4-7) spans
the processes. Process 0 rewards everything 1, process 1 everything 0, so group 1's correct answers
are all on process 0: process 1's rows of group 1 must still get ARM's shift, and its group 2 none.
Each process writes what it saw to OUT_DIR/rank{R}.json."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE)), HERE]

import torch  # noqa: E402

torch.set_num_threads(1)
from test_trl_arm import config, dataset, tiny_model_and_tokenizer  # noqa: E402
from trl_arm import ARMGRPOTrainer  # noqa: E402


def rank_reward(completion_ids, **kwargs) -> list[float]:
    return [1.0 if int(os.environ.get("RANK", "0")) == 0 else 0.0] * len(completion_ids)


class Keep(ARMGRPOTrainer):
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        self.seen = {"prompts": [x["prompt"] for x in inputs], "advantages": out["advantages"].tolist(),
                     "trl_advantages": self._arm_last["trl_advantages"].tolist(),
                     "rewards_all": self._arm_last["rewards"].tolist(), "c_q_all": self._arm_last["c_q"].tolist(),
                     "c_o_all": self._arm_last["c_o"].tolist(), "process_index": self.accelerator.process_index}
        return out


if __name__ == "__main__":
    out_dir = sys.argv[1]
    model, tok = tiny_model_and_tokenizer()
    args = config(os.path.join(out_dir, "trl"), per_device_train_batch_size=6, max_steps=1, alpha=1.0)
    trainer = Keep(model=model, reward_funcs=rank_reward, args=args, train_dataset=dataset(), processing_class=tok)
    trainer.train()
    with open(os.path.join(out_dir, f"rank{trainer.accelerator.process_index}.json"), "w") as f:
        json.dump(trainer.seen, f)
    # end the process group, then leave without the interpreter's teardown: there, threads of gloo or of
    # the trainer sometimes abort a process ("terminate called without an active exception", seen twice
    # in CI, even after destroy_process_group) when its work is done and written
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
