"""The problems a run trains and evaluates on: the toy's generator or a JSONL file, as a seeded stream.

JSONL records may be GSM8K (question/answer), MATH (problem/solution) or prompt/answer; each
question goes through the run's prompt template (written out below: plain, qwen-chat, chatml, llama3-chat).

A problem is {"prompt": text the policy continues, "answer": the gold answer verifier.verify reads}.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

import verifier
from config import TEMPLATES, Config, key_error
from toys.tasks import make_problems, solution_path

TOY_TRAIN_PROBLEMS = 10000  # the toy's training pool (a step uses --prompts-per-step of them)


class DataError(ValueError):
    """A data file we refuse; the message names FILE:LINE and the reason."""


def parse_record(d) -> dict:
    """One JSONL record -> {"question", "answer"}; raises ValueError(reason) if malformed.

    GSM8K: question + answer ending in '#### N'. MATH: problem + solution with \\boxed{} (or an
    explicit answer field). Plain: prompt + answer."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, got {type(d).__name__}")

    def text(key):
        v = d[key]
        if not isinstance(v, (str, int, float)) or isinstance(v, bool) or str(v).strip() == "":
            raise ValueError(f"field {key!r} is empty or not a string")
        return str(v)

    if "question" in d and "answer" in d:  # GSM8K
        ans = text("answer")
        if "####" not in ans:
            raise ValueError("GSM8K answer has no '#### N' final answer")
        gold = ans.rsplit("####", 1)[1].strip()
        if not gold:
            raise ValueError("GSM8K answer is empty after '####'")
        return {"question": text("question"), "answer": gold}
    if "problem" in d and ("answer" in d or "solution" in d):  # MATH (MATH-500 has both)
        if "answer" in d:
            return {"question": text("problem"), "answer": text("answer")}
        gold = verifier.extract_answer(text("solution"))
        if not gold:
            raise ValueError("MATH solution has no \\boxed{} answer")
        return {"question": text("problem"), "answer": gold}
    if "prompt" in d and "answer" in d:
        return {"question": text("prompt"), "answer": text("answer")}
    # a record of a known format with a field missing: name it
    for has, needs in (("question", "'answer'"), ("problem", "'solution' or 'answer'"), ("prompt", "'answer'"),
                       ("solution", "'problem'"), ("answer", "'question', 'problem' or 'prompt'")):
        if has in d:
            raise ValueError(f"record has {has!r} but no {needs}")
    raise ValueError(f"unknown record with keys {sorted(d)[:6]}: expected question/answer (GSM8K), "
                     "problem/solution (MATH) or prompt/answer")


def read_jsonl(path: str | Path, *, strict: bool = False, warn=print) -> list[dict]:
    """Records of a JSONL file. A malformed line is reported as FILE:LINE: reason and skipped
    (strict: the file is refused with that message)."""
    out, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                try:  # without the line's newline, an error at its end is placed on this line, not the next
                    d = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as e:
                    raise ValueError(f"malformed JSON ({e.msg}, column {e.colno})") from None
                out.append(parse_record(d))
            except ValueError as e:
                msg = f"{path}:{lineno}: {e}"
                if strict:
                    raise DataError(msg + " (--strict: refusing the file)") from None
                warn(f"skipping {msg}")
                bad += 1
    if not out:
        raise DataError(f"{path}: no usable records" + (f" ({bad} malformed lines)" if bad else ""))
    return out


def load_problems(cfg: Config, warn=print) -> tuple[list[dict], list[dict], Callable[[str], str | None]]:
    """(train problems, held-out problems, path_fn). Each problem: {"prompt": text, "answer": gold}.
    path_fn(text) names the solution a correct response took (toys.tasks.solution_path for a toy;
    for other data the whitespace-normalised response, i.e. distinct correct texts).
    Without --eval-data, the first --eval-prompts records of --data are held out; a file with no
    more records than that holds out half of them instead (and says so), so that it still trains."""
    if not cfg.data:
        train = make_problems(TOY_TRAIN_PROBLEMS, cfg.seed, "train", cfg.toy)  # fixed size: --steps never changes the order
        held = make_problems(cfg.eval_prompts, cfg.eval_seed, "heldout", cfg.toy) if cfg.eval_prompts else []
        return train, held, solution_path
    records = read_jsonl(cfg.data, strict=cfg.strict, warn=warn)
    if cfg.eval_data:
        held = read_jsonl(cfg.eval_data, strict=cfg.strict, warn=warn)[: cfg.eval_prompts]
    else:  # hold out the first records; never train on them
        n_held = cfg.eval_prompts if cfg.eval_prompts < len(records) else len(records) // 2
        if n_held < cfg.eval_prompts:
            if not n_held:
                raise DataError(f"{cfg.data}: {len(records)} record(s) cannot be split into held-out and training "
                                "problems; give --eval-data or --eval-prompts 0")
            warn(f"{cfg.data}: holding out {n_held} of its {len(records)} records, not --eval-prompts "
                 f"{cfg.eval_prompts}, which would leave nothing to train on (--eval-data gives a separate file)")
        held, records = records[:n_held], records[n_held:]
    as_problem = lambda r: {"prompt": apply_template(r["question"], cfg.template), "answer": r["answer"]}
    return [as_problem(r) for r in records], [as_problem(r) for r in held], lambda t: " ".join(t.split())


def take_batch(problems: list[dict], pos: int, k: int, seed: int) -> list[dict]:
    """Problems pos .. pos+k-1 of an endless stream: the list shuffled anew each pass, by (seed, pass).
    Stateless, so a resumed run only needs `pos`."""
    orders = {}  # pass -> permutation, for the one or two passes this batch touches
    out = []
    for i in range(pos, pos + k):
        epoch, j = divmod(i, len(problems))
        if epoch not in orders:
            orders[epoch] = np.random.default_rng([seed, epoch]).permutation(len(problems))
        out.append(problems[orders[epoch][j]])
    return out


# ----------------------------------------------------------------------------------------------
# prompt templates, written out as text (no jinja at run time)
#
#     plain        the text as is (the toy, base models)
#     qwen-chat    Qwen2/2.5's ChatML with its default system turn
#     chatml       ChatML without a system turn (SmolLM2 and other ChatML models)
#     llama3-chat  Llama 3.1/3.2's format, with the system turn its template renders (date fixed)
#     auto         chosen by hf.pick_template from the tokenizer's special tokens (config.py resolves it)
#
# Every chat template asks for the answer in \boxed{} (the verifier reads it) and renders exactly what
# transformers' apply_chat_template renders for one user message with the generation prompt
# (tests/test_templates.py checks this against the real templates).

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


# ----------------------------------------------------------------------------------------------
# the prompts meet the model: where a response ends, and whether a prompt fits


def chat_eos_ids(model, tokenizer, cfg: Config) -> list[int]:
    """The model's EOS ids, plus the chat template's end-of-turn token (<|im_end|>, <|eot_id|>):
    a base model's chat turn ends there."""
    ids = list(getattr(model, "eos_token_ids", []))
    if cfg.template in TURN_TOKENS:
        start, end = TURN_TOKENS[cfg.template]
        if tokenizer.token_to_id(start) is None or tokenizer.token_to_id(end) is None:
            raise key_error("template", f"{cfg.template} needs {start}/{end} in the tokenizer; this model has none")
        ids = list(dict.fromkeys(ids + [tokenizer.token_to_id(end)]))
    if not ids:
        raise key_error("model", "no EOS token id in generation_config.json/config.json: responses would never end")
    return ids


def check_prompts_fit(model, tokenizer, problems: list[dict], cfg: Config) -> None:
    """A prompt plus --max-new-tokens must fit the model's positions (checked on the first of each set)."""
    for p in problems:
        prompt_len = len(encode_prompts(tokenizer, [p["prompt"]], cfg.template)[0])
        if prompt_len + cfg.max_new_tokens > model.config.max_position_embeddings:
            raise key_error("max_new_tokens", f"prompt + {cfg.max_new_tokens} new tokens exceed the model's "
                              f"max_position_embeddings {model.config.max_position_embeddings}")
