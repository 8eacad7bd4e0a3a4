"""Train a Hugging Face model with ARM through TRL, on the JSONL problems train.py reads.

    python integrations/trl_train.py --model ./Qwen2.5-0.5B-Instruct --data gsm8k_train.jsonl --out runs/trl
    accelerate launch --num_processes 8 integrations/trl_train.py --model Qwen/Qwen2.5-7B-Instruct \
        --data math_train.jsonl --use-vllm --bf16 ...       (several GPUs; see integrations/README.md)

Problems: data.read_jsonl (GSM8K question/answer, MATH problem/solution, or prompt/answer). Prompts:
with a tokenizer that has a chat template, one user turn (the question, then data.py's \\boxed{}
instruction) that TRL renders with the model's own template; otherwise the question as plain text.
Reward: 1 if verifier.verify(completion, answer), else 0 (arm.py's "correct" is reward > 0).
Everything else is TRL's GRPOTrainer with ARMGRPOConfig's defaults (trl_arm.py).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]  # trl_arm; the repo root's data, verifier

from datasets import Dataset  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

import verifier  # noqa: E402
from data import read_jsonl  # noqa: E402
from data import BOXED_INSTRUCTION  # noqa: E402
from trl_arm import ARMGRPOConfig, ARMGRPOTrainer  # noqa: E402


def verifier_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """TRL reward function: 1.0 if the completion's final answer equals the gold answer, else 0.0."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]  # chat: the assistant turn
    return [float(verifier.verify(t, a)) for t, a in zip(texts, answer)]


def build_dataset(path: str, chat: bool) -> Dataset:
    problems = read_jsonl(path)
    prompts = [[{"role": "user", "content": f"{p['question']}\n{BOXED_INSTRUCTION}"}] if chat else p["question"]
               for p in problems]
    return Dataset.from_dict({"prompt": prompts, "answer": [p["answer"] for p in problems]})


def main(argv: list[str] | None = None) -> ARMGRPOTrainer:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="a Hugging Face model folder or hub name")
    ap.add_argument("--data", required=True, help="JSONL problems (GSM8K, MATH or prompt/answer)")
    ap.add_argument("--out", default="runs/trl", help="TRL's output_dir")
    ap.add_argument("--alpha", type=float, default=1.0, help="ARM's alpha; 0 is TRL's GRPO")
    ap.add_argument("--low-frac", type=float, default=0.2, help="c(o|q)'s fraction of lowest log-probs")
    ap.add_argument("--shift-rows", default="group", choices=["group", "correct"])
    ap.add_argument("--shift-center", default="prompt", choices=["prompt", "correct-mean"])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--per-device-batch", type=int, default=8, help="completions per device per step")
    ap.add_argument("--group-size", type=int, default=8, help="TRL's num_generations")
    ap.add_argument("--max-completion-length", type=int, default=1024)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--use-vllm", action="store_true", help="generate with vLLM (TRL's colocate mode)")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (tests, tiny models)")
    a = ap.parse_args(argv)

    tok = AutoTokenizer.from_pretrained(a.model)
    args = ARMGRPOConfig(output_dir=a.out, alpha=a.alpha, low_frac=a.low_frac, shift_rows=a.shift_rows,
                         shift_center=a.shift_center, max_steps=a.steps, learning_rate=a.lr,
                         per_device_train_batch_size=a.per_device_batch, num_generations=a.group_size,
                         max_completion_length=a.max_completion_length, temperature=a.temperature,
                         use_vllm=a.use_vllm, vllm_mode="colocate", bf16=a.bf16, use_cpu=a.cpu,
                         logging_steps=1, save_strategy="no", report_to="none")
    trainer = ARMGRPOTrainer(model=a.model, reward_funcs=verifier_reward, args=args, processing_class=tok,
                             train_dataset=build_dataset(a.data, chat=tok.chat_template is not None))
    trainer.train()
    trainer.save_model(os.path.join(a.out, "policy"))
    return trainer


if __name__ == "__main__":
    main()
