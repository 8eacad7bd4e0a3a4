"""train.py, stage by stage, on a tiny random model in Hugging Face layout (built in the test)."""
import json

import pytest
import torch

import config
import data
import train
from hf import load_model, load_tokenizer
from logprobs import response_logprobs
from train_helpers import write_jsonl



def cfg_for(tiny, **kw):
    model, data = tiny
    base = dict(model=str(model), data=str(data), steps=2, prompts_per_step=3, group_size=4, max_new_tokens=8,
                micro_batch=4, eval_prompts=2, eval_n=4, save_every=0)
    return config.make_config({**base, **kw})


# ---------------------------------------------------------------- configuration


def run_main(argv, capsys):
    rc = train.main(argv)
    return rc, capsys.readouterr().err.strip()


def test_help_lists_every_flag_users_expect():
    text = config.build_parser().format_help()
    for flag in ["--model", "--steps", "--prompts-per-step", "--group-size", "--max-new-tokens", "--temperature",
                 "--top-p", "--lr", "--seed", "--eval-every", "--eval-prompts", "--eval-n", "--save-every", "--resume",
                 "--out", "--config", "--algo", "--alpha", "--low-frac", "--adv-scale", "--loss-agg", "--eps-low",
                 "--eps-high", "--kl-coef", "--epochs", "--mini-batches", "--micro-batch", "--data", "--eval-data",
                 "--template", "--strict", "--device", "--dtype"]:
        assert flag in text, flag


@pytest.mark.parametrize("content, key", [
    ({"stepz": 3}, "stepz: unknown key"),
    ({"steps": "3"}, "steps: expected int, got str"),
    ({"steps": 2.5}, "steps: expected int"),
    ({"strict": 1}, "strict: expected bool"),
    ({"lr": True}, "lr: expected float"),
    ({"algo": "ppo"}, "algo: 'ppo' is not one of"),
    ({"micro_batch": 0}, "micro_batch: must be >= 1"),
    ({"algo": "grpo", "alpha": 0.5}, "alpha: --algo grpo is ARM with alpha = 0"),
    ({"group_size": 1}, "group_size:"),
    ({"mini_batches": 3}, "mini_batches:"),
    ({"dtype": "bfloat16", "device": "cpu"}, "dtype: bfloat16 autocast is for CUDA"),
    ({"data": "/nonexistent.jsonl"}, "data: /nonexistent.jsonl: file not found"),
])
def test_bad_config_file_is_one_line_naming_the_key(tmp_path, capsys, content, key):
    f = tmp_path / "c.json"
    f.write_text(json.dumps(content))
    rc, err = run_main(["--config", str(f)], capsys)
    assert rc == 2 and key in err and len(err.splitlines()) == 1, err


def test_flags_override_config_file_and_types_are_checked(tmp_path, capsys):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"steps": 7, "lr": 1, "group-size": 4, "algo": "grpo"}))
    cfg, _ = config.parse_command_line(["--config", str(f), "--steps", "3"])
    assert (cfg.steps, cfg.lr, cfg.group_size, cfg.alpha) == (3, 1.0, 4, 0.0)
    assert config.parse_command_line([])[0].alpha == config.DEFAULT_ALPHA
    with pytest.raises(SystemExit):  # argparse: a wrong type on the command line is one line too
        config.parse_command_line(["--steps", "many"])
    assert "--steps: invalid int value" in capsys.readouterr().err


@pytest.mark.parametrize("argv, line", [
    (["--lr", "-1e-4"], "--lr (lr): must be a finite number >= 0, got -0.0001"),  # argparse took -1e-4 for a flag
    (["--lr=-1e-4"], "--lr (lr): must be a finite number >= 0, got -0.0001"),
    (["--kl-coef", "-1e-1"], "--kl-coef (kl_coef): must be a finite number >= 0, got -0.1"),
    (["--kl", "-1e-1"], "--kl-coef (kl_coef): must be a finite number >= 0, got -0.1"),  # a prefix, as argparse allows
    (["--alpha", "-inf"], "--alpha (alpha): must be finite, got -inf"),
    (["--steps", "-1e3"], "--steps: invalid int value: '-1e3'"),
    (["--toy", "hiddentype"],
     "--toy: invalid choice 'hiddentype' (choose from original, equal-paths, hidden-type, shown-type, hidden-type-r20)"),
    (["--steps"], "--steps: expected one argument"),
    (["--stepz", "3"], "unrecognized arguments: --stepz 3"),
])
def test_every_command_line_error_is_one_line_without_usage(argv, line, capsys):
    try:
        rc = train.main(argv)
    except SystemExit as e:  # argparse's own errors exit from the parser
        rc = e.code
    assert (rc, capsys.readouterr().err) == (2, f"train.py: error: {line}\n")


def test_a_negative_number_after_a_flag_is_its_value(capsys, monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    assert config.parse_command_line(["--alpha", "-5e-1"])[0].alpha == -0.5
    r = subprocess.run([sys.executable, "train.py", "--lr", "-1e-4"], cwd=Path(__file__).resolve().parent.parent,
                       capture_output=True, text=True, timeout=120)  # from sys.argv, as the shell gives it
    assert (r.returncode, r.stderr) == (2, "train.py: error: --lr (lr): must be a finite number >= 0, got -0.0001\n")
    from research import compare  # compare.py reads train.py's flags through config.build_parser
    for stage in ("evaluate_base", "run_all"):
        monkeypatch.setattr(compare, stage, lambda *a, **k: pytest.fail("a run started"))
    assert compare.main(["--kl-coef", "-1e-1"]) == 2
    assert capsys.readouterr().err == "compare.py: error: kl_coef: must be a finite number >= 0, got -0.1\n"


def test_defaults_that_outgrow_a_small_rollout_are_clamped_not_refused(tiny):
    """`--prompts-per-step 4 --group-size 4` leaves micro_batch at its default 32: more rows than the
    rollout's 16 bound nothing, so they are clamped (config.json records 16), never refused."""
    cfg, _ = config.parse_command_line(["--steps", "2", "--prompts-per-step", "4", "--group-size", "4"])
    assert cfg.micro_batch == 16
    assert cfg_for(tiny, micro_batch=5).micro_batch == 5
    assert "clamped" in config.build_parser().format_help()


def test_help_text_comes_from_the_config_fields():
    import dataclasses
    text = " ".join(config.build_parser().format_help().split())
    for f in dataclasses.fields(config.Config):
        assert f.metadata["help"].split()[0] in text and "--" + f.name.replace("_", "-") in text, f.name
    assert "P distinct prompts per step (default: 16)" in text


# ---------------------------------------------------------------- data


def test_a_jsonl_error_at_the_end_of_a_line_is_placed_on_that_line(tmp_path):
    """json.loads of a line with its newline puts an error at the line's end at "column 1" of the
    next line; the line is read without it, so the column is the one just past the last character."""
    cut = '{"prompt": "b", "answer": "2"'  # the closing brace is missing
    f = tmp_path / "d.jsonl"
    f.write_text('{"prompt": "a", "answer": "1"}\n' + cut + "\n" + '{"prompt": "c", "answer": "3"}\r\n')
    warnings = []
    assert len(data.read_jsonl(f, warn=warnings.append)) == 2
    assert warnings == [f"skipping {f}:2: malformed JSON (Expecting ',' delimiter, column {len(cut) + 1})"]


def test_jsonl_formats_and_malformed_lines_named_by_file_and_line(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [
        {"question": "Natalia sold 48 clips...", "answer": "She sold 48/2 = 24.\n#### 1,072"},
        {"problem": "Find x.", "solution": "So $x = \\boxed{\\frac{1}{2}}$."},
        {"problem": "MATH-500 style", "solution": "...", "answer": "3"},
        {"prompt": "2+2=", "answer": "4"},
        "{not json",
        {"question": "no final answer", "answer": "42"},
        {"problem": "no boxed", "solution": "x is 3"},
        [1, 2],
        {"text": "unknown keys"},
        "",
        {"prompt": "", "answer": "1"},
    ])
    warnings = []
    recs = data.read_jsonl(f, warn=warnings.append)
    assert recs == [{"question": "Natalia sold 48 clips...", "answer": "1,072"},
                    {"question": "Find x.", "answer": "\\frac{1}{2}"},
                    {"question": "MATH-500 style", "answer": "3"},
                    {"question": "2+2=", "answer": "4"}]
    assert [w.split(": ", 1)[0] for w in warnings] == [f"skipping {f}:{i}" for i in (5, 6, 7, 8, 9, 11)]
    assert "malformed JSON" in warnings[0] and "####" in warnings[1] and "boxed" in warnings[2]
    assert "JSON object" in warnings[3] and "unknown record" in warnings[4] and "empty" in warnings[5]
    with pytest.raises(data.DataError, match=rf"{f}:5: malformed JSON.*--strict"):
        data.read_jsonl(f, strict=True)


def test_a_record_missing_a_field_names_the_field(tmp_path):
    """Each format's record without its gold answer (or question) says which field is missing, not 'unknown record'."""
    f = write_jsonl(tmp_path / "d.jsonl", [
        {"prompt": "2+2="},
        {"question": "Natalia sold 48 clips..."},
        {"problem": "Find x."},
        {"solution": "So $x = \\boxed{1}$."},
        {"answer": "4"},
        {"prompt": "2+2=", "answer": "4"},
    ])
    warnings = []
    assert len(data.read_jsonl(f, warn=warnings.append)) == 1
    assert warnings == [f"skipping {f}:1: record has 'prompt' but no 'answer'",
                        f"skipping {f}:2: record has 'question' but no 'answer'",
                        f"skipping {f}:3: record has 'problem' but no 'solution' or 'answer'",
                        f"skipping {f}:4: record has 'solution' but no 'problem'",
                        f"skipping {f}:5: record has 'answer' but no 'question', 'problem' or 'prompt'"]
    with pytest.raises(data.DataError, match=rf"^{f}:1: record has 'prompt' but no 'answer' \(--strict"):
        data.read_jsonl(f, strict=True)


def test_strict_refuses_the_file_before_training(tiny, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "a", "answer": "1"}, "oops"])
    rc, err = run_main(["--model", str(tiny[0]), "--data", str(bad), "--strict", "--out", str(tmp_path / "o"),
                        "--prompts-per-step", "1", "--group-size", "2", "--micro-batch", "2"], capsys)
    assert rc == 2 and f"{bad}:2: malformed JSON" in err and not (tmp_path / "o" / "metrics.jsonl").exists()


def test_templates_write_the_chat_markers_out():
    assert data.apply_template("What is 1+1?", "plain") == "What is 1+1?"
    assert data.apply_template("What is 1+1?", "qwen-chat") == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is 1+1?\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_qwen_chat_prompts_tokenise_markers_as_single_tokens_and_end_turns_at_im_end(tiny):
    tok = load_tokenizer(tiny[0])
    ids = data.encode_prompts(tok, [data.apply_template("hi", "qwen-chat")])[0]
    assert ids[0] == tok.token_to_id("<|im_start|>") and ids.count(tok.token_to_id("<|im_end|>")) == 2
    cfg = cfg_for(tiny, template="qwen-chat")
    assert tok.token_to_id("<|im_end|>") in data.chat_eos_ids(load_model(tiny[0]), tok, cfg)


def test_data_stream_is_a_seeded_shuffle_per_pass_and_resumable_from_its_position():
    probs = [{"prompt": str(i), "answer": str(i)} for i in range(10)]
    stream = data.take_batch(probs, 0, 30, seed=3)
    assert sorted(p["prompt"] for p in stream[:10]) == [str(i) for i in range(10)]  # each pass is a permutation
    assert stream[:10] != stream[10:20]  # reshuffled each pass
    assert data.take_batch(probs, 7, 9, seed=3) == stream[7:16]  # position is the whole state
    assert data.take_batch(probs, 0, 10, seed=4) != stream[:10]


def test_held_out_records_never_trained_on(tiny):
    cfg = cfg_for(tiny, eval_prompts=5)
    tr, held, _ = data.load_problems(cfg)
    assert len(held) == 5 and not {p["prompt"] for p in held} & {p["prompt"] for p in tr}


def test_a_data_file_too_small_for_the_default_eval_prompts_holds_out_half(tiny, tmp_path):
    warnings = []
    cfg = cfg_for(tiny, eval_prompts=128)  # the default, for a 24-record file
    tr, held, _ = data.load_problems(cfg, warn=warnings.append)
    assert (len(held), len(tr)) == (12, 12) and "holding out 12 of its 24 records" in warnings[0]
    assert [len(x) for x in data.load_problems(cfg_for(tiny, eval_prompts=23))[:2]] == [1, 23]  # as before
    one = write_jsonl(tmp_path / "one.jsonl", [{"prompt": "a", "answer": "1"}])
    with pytest.raises(data.DataError, match="cannot be split"):
        data.load_problems(cfg_for(tiny, data=str(one)))


# ---------------------------------------------------------------- the stages


def make_rollout(tiny, cfg, eos_ids=None, seed=0):
    model = load_model(tiny[0])
    tok = load_tokenizer(tiny[0])
    probs = data.take_batch(data.load_problems(cfg)[0], 0, cfg.prompts_per_step, 0)
    ro = train.rollout(model, tok, probs, cfg, torch.Generator().manual_seed(seed),
                       eos_ids if eos_ids is not None else model.eos_token_ids)
    return model, tok, probs, ro


def test_rollout_masks_come_from_lengths_even_when_pad_is_an_eos_id(tiny):
    cfg = cfg_for(tiny, max_new_tokens=12)
    V = load_model(tiny[0]).config.vocab_size
    # every even id ends a response, including 0, the value the sampler pads with
    model, tok, probs, ro = make_rollout(tiny, cfg, eos_ids=list(range(0, V, 2)))
    g = ro.gen
    assert ro.input_ids.shape == ro.attn_mask.shape == (12, ro.T0 + g.tokens.shape[1])
    assert torch.equal(ro.attn_mask[:, ro.T0:].sum(-1), g.lengths)
    assert g.finished.any() and (g.tokens[g.finished, g.lengths[g.finished] - 1] % 2 == 0).all()
    assert torch.equal(ro.attn_mask[:, :ro.T0].sum(-1), torch.tensor([len(p) for p in ro.prompt_ids]).repeat_interleave(4))


@pytest.mark.parametrize("temperature, top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_training_logprobs_equal_the_sampling_logprobs(tiny, temperature, top_p):
    cfg = cfg_for(tiny, temperature=temperature, top_p=top_p, max_new_tokens=10)
    model, tok, probs, ro = make_rollout(tiny, cfg)
    with torch.no_grad():
        lp = response_logprobs(model, ro.input_ids, ro.attn_mask, ro.gen.tokens, ro.gen.mask, ro.T0, temperature,
                               chunked=False)[0]  # full logits, then log_softmax at T
    assert (lp - ro.gen.logprobs).masked_fill(~ro.gen.mask, 0).abs().max() < 1e-4


def test_rewards_confidences_and_advantages_shapes_and_grpo_is_alpha_zero(tiny):
    cfg = cfg_for(tiny)
    model, tok, probs, ro = make_rollout(tiny, cfg)
    r = train.compute_rewards(["\\boxed{%s}" % p["answer"] for p in probs for _ in range(4)], [p["answer"] for p in probs], 4)
    assert torch.equal(r, torch.ones(3, 4))
    r = torch.tensor([[1., 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    c_q, c_o = train.compute_confidences(ro, 4, cfg.low_frac)
    assert c_q.shape == (3,) and c_o.shape == (3, 4) and ((c_o > 0) & (c_o <= 1)).all() and ((c_q > 0) & (c_q <= 1)).all()
    a_grpo = train.compute_advantages(r, c_q, c_o, config.make_config({**vars(cfg), "algo": "grpo", "alpha": None}))
    assert torch.equal(a_grpo, train.compute_advantages(r, None, c_o, config.make_config({**vars(cfg), "alpha": 0.0})))
    a_arm = train.compute_advantages(r, c_q, c_o, config.make_config({**vars(cfg), "alpha": 2.0}))
    assert torch.equal(a_arm[1], a_grpo[1])  # no correct answer: GRPO's advantage (0)
    torch.testing.assert_close(a_arm - a_grpo, torch.where(r.sum(-1, keepdim=True) > 0, 2.0 * (c_q[:, None] - c_o), 0.0))
    st = train.step_stats(ro, r, c_q, c_o, a_arm, cfg)
    assert (st["equal_reward_groups"], st["all_correct_groups"], st["all_wrong_groups"]) == (2, 1, 1)
    assert st["truncated"] == int((~ro.gen.finished).sum())
    assert st["arm_shift_abs_mean"] > 0 and 0 < st["zero_adv_frac"] < 1


def grads_after_update(tiny, **kw):
    cfg = cfg_for(tiny, grad_clip=0.0, **kw)
    model, tok, probs, ro = make_rollout(tiny, cfg)
    adv = torch.linspace(-1, 1, 12).view(3, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = train.policy_update(model, None, opt, ro, adv, cfg, step=1)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]), stats


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "constant"])
def test_micro_batching_equals_full_batch(tiny, agg):
    full, s_full = grads_after_update(tiny, loss_agg=agg, micro_batch=12)
    micro, s_micro = grads_after_update(tiny, loss_agg=agg, micro_batch=5)  # uneven: 5 + 5 + 2 rows
    assert full.abs().max() > 0
    torch.testing.assert_close(micro, full, rtol=1e-4, atol=1e-7)
    assert s_full["entropy"] == pytest.approx(s_micro["entropy"], rel=1e-5)


def test_one_update_per_rollout_has_ratio_one_and_no_clipping(tiny):
    _, stats = grads_after_update(tiny, loss_agg="token-mean")
    assert stats["grad_norm"] > 0
    ratio = [v for k, v in stats.items() if "ratio" in k]
    assert ratio and ratio[0] == pytest.approx(1.0, abs=1e-4)
    assert all(v == 0 for k, v in stats.items() if "clip" in k)


def test_help_groups_the_flags_names_them_in_trl_and_verl_and_says_what_resume_may_change(monkeypatch):
    import dataclasses
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping: argparse wraps help at the terminal's width
    text = config.build_parser().format_help()
    lines = text.splitlines()

    def entry(key):  # a flag's line, with its help's line when a long flag puts the help below
        i = next(i for i, l in enumerate(lines) if l.strip().split(" ")[0].rstrip(",") == config.flag(key))
        return "\n".join(lines[i:i + 2]) if lines[i + 1].startswith(" " * 3) else lines[i]

    titles = [l[:-1] for l in lines if l.endswith(":") and not l.startswith(" ")]
    assert titles[-len(config.HELP_GROUPS):] == list(config.HELP_GROUPS)  # in this order, after argparse's own
    groups = text.split("\n\n")
    for f in dataclasses.fields(config.Config):  # each flag in its field's group
        group = next(g for g in groups if g.startswith(f.metadata["group"] + ":"))
        assert entry(f.name) in group, f.name
    assert groups[-2].startswith("run folder:") and "--config" in groups[-2] and "--overwrite" in groups[-2]
    for key, (trl, verl) in config.ENGINE_NAMES.items():  # beside the flag
        assert f"[TRL: {trl}" in entry(key) and (verl is None or f"verl: {verl}]" in entry(key)), key
    assert "[TRL: num_generations | verl: actor_rollout_ref.rollout.n]" in entry("group_size")
    for key, note in config.ENGINE_NOTES.items():
        assert note in entry(key), key
    assert "sample std" in text and "The same settings in TRL" not in text  # no table at the end any more
    resume = " ".join(text.split("--resume RUN:")[1].split("--out:")[0].split())
    assert all(config.flag(k) in resume for k in config.RESUME_MAY_CHANGE if k != "resume")
    assert "refused" in resume and "--lr" not in resume
