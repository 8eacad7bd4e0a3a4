"""Tiny models and data files for the train.py tests (built in a fraction of a second)."""
import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from hf import save_model
from model import ModelConfig, Transformer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = ["Q: 12+34+56=?\nA: 12+34=46\n46+56=102\n\\boxed{102}", "What is 2+3? The answer is \\boxed{5}.",
          "#### 42", "Please reason step by step"] * 20


def tiny_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                             show_progress=False)
    tok.train_from_iterator(CORPUS, tr)
    return tok


def tiny_model_dir(path: Path, seed: int = 0, model_type: str = "qwen2") -> Path:
    """A random tiny model in Hugging Face layout (config, safetensors, tokenizer.json)."""
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = ModelConfig(model_type=model_type, vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=tok.token_to_id("<|endoftext|>"), tie_word_embeddings=True)
    save_model(Transformer(cfg), path, tok)
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def plain_data(path: Path, n: int = 24) -> Path:
    return write_jsonl(path, [{"prompt": f"Q: {i}+{i + 1}=?\nA: ", "answer": str(2 * i + 1)} for i in range(n)])
