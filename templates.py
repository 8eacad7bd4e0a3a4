"""Prompt templates written out as text (no jinja at run time), their tokenisation, their end of turn.

    plain        the text as is (the toy, base models)
    qwen-chat    Qwen2/2.5's ChatML with its default system turn
    chatml       ChatML without a system turn (SmolLM2 and other ChatML models)
    llama3-chat  Llama 3.1/3.2's format, with the system turn its template renders (date fixed)
    auto         chosen by pick_template from the tokenizer's special tokens

Every chat template asks for the answer in \\boxed{} (the verifier reads it) and renders exactly
what transformers' apply_chat_template renders for one user message with the generation prompt
(tests/test_templates.py checks this against the real templates).
"""
from __future__ import annotations

import json
from pathlib import Path

from model import load_tokenizer

TEMPLATES = ("plain", "qwen-chat", "llama3-chat", "chatml")
QWEN_SYSTEM = "You are a helpful assistant."
# Llama 3.1/3.2's system turn; the date is the one its template writes when it is given no clock
LLAMA3_SYSTEM = "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# chat template -> (a marker the tokenizer must have, the end-of-turn token: it ends a response)
TURN_TOKENS = {
    "qwen-chat": ("<|im_start|>", "<|im_end|>"),
    "chatml": ("<|im_start|>", "<|im_end|>"),
    "llama3-chat": ("<|start_header_id|>", "<|eot_id|>"),
}


def apply_template(question: str, template: str) -> str:
    """The prompt text of one question: plain is the question itself; a chat template is one user
    turn (question, then the boxed instruction) followed by the assistant's header."""
    if template == "plain":
        return question
    user = f"{question}\n{BOXED_INSTRUCTION}"
    if template == "qwen-chat":
        return (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n"
                f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
    if template == "chatml":
        return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    if template == "llama3-chat":  # the template trims each message's content
        return (f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{LLAMA3_SYSTEM}<|eot_id|>"
                f"<|start_header_id|>user<|end_header_id|>\n\n{user.strip()}<|eot_id|>"
                f"<|start_header_id|>assistant<|end_header_id|>\n\n")
    raise ValueError(f"template: {template!r} is not one of {', '.join(TEMPLATES)}")


def encode_prompts(tokenizer, texts: list[str], template: str = "plain") -> list[list[int]]:
    """Token ids of each prompt. A chat template's text already holds every special token (Llama's
    BOS included), so the tokenizer adds none; plain text gets what the tokenizer adds (e.g. a BOS)."""
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=template == "plain")]


def pick_template(model_dir: str | Path) -> tuple[str, str]:
    """--template auto: (template, why) from the special tokens of the model's tokenizer.json; between
    the two ChatML templates, config.json's model_type decides (qwen-chat for Qwen models)."""
    tok = load_tokenizer(model_dir)
    has = lambda *tokens: all(tok.token_to_id(t) is not None for t in tokens)
    if has("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        return "llama3-chat", "the tokenizer has Llama 3's <|start_header_id|> and <|eot_id|>"
    if has("<|im_start|>", "<|im_end|>"):
        cfg_file = Path(model_dir) / "config.json"
        try:
            model_type = json.loads(cfg_file.read_text()).get("model_type", "")
        except (OSError, ValueError, AttributeError):  # load_model reports a broken config.json, naming it
            model_type = ""
        if str(model_type).startswith("qwen"):
            return "qwen-chat", f"the tokenizer has ChatML's <|im_start|> and <|im_end|>; model_type {model_type}"
        return "chatml", f"the tokenizer has ChatML's <|im_start|> and <|im_end|>; model_type {model_type or '?'} is not Qwen"
    return "plain", "the tokenizer has no chat markers"
