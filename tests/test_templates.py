"""Chat templates against what transformers' apply_chat_template renders from the real jinja templates
(golden strings in tests/fixtures/templates/, from make_template_fixtures.py; compared live too when
transformers is installed), their end-of-turn tokens, and --template auto."""
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

import config
import data
from config import TEMPLATES
from data import BOXED_INSTRUCTION, TURN_TOKENS, apply_template, encode_prompts
from hf import load_model, load_tokenizer, pick_template
from train_helpers import tiny_model_dir

FIX = Path(__file__).parent / "fixtures" / "templates"
GOLDEN = json.loads((FIX / "golden.json").read_text())
CHAT = [t for t in TEMPLATES if t != "plain"]


def fixture_tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(FIX / "tokenizer.json"))


@pytest.mark.parametrize("template", CHAT)
def test_text_and_ids_equal_transformers_apply_chat_template(template):
    assert set(GOLDEN["text"]) == set(CHAT)
    tok = fixture_tokenizer()
    for q, text, ids in zip(GOLDEN["questions"], GOLDEN["text"][template], GOLDEN["ids"][template]):
        assert apply_template(q, template) == text
        assert encode_prompts(tok, [apply_template(q, template)], template)[0] == ids  # one BOS, markers whole
    if template == "llama3-chat":  # the tokenizer adds a BOS to plain text, as Llama 3's does; never twice
        bos = tok.token_to_id("<|begin_of_text|>")
        assert ids.count(bos) == 1 and encode_prompts(tok, ["hi"])[0][0] == bos


@pytest.mark.parametrize("template", CHAT)
def test_live_against_transformers_when_installed(template):
    transformers = pytest.importorskip("transformers")
    spec = GOLDEN["templates"][template]
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=fixture_tokenizer(), bos_token=spec["bos_token"],
                                              eos_token=spec["eos_token"])
    hf.chat_template = spec["chat_template"]
    for q in GOLDEN["questions"]:
        messages = [{"role": "user", "content": f"{q}\n{BOXED_INSTRUCTION}"}]
        text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **spec["render_kwargs"])
        assert apply_template(q, template) == text


@pytest.mark.parametrize("template", CHAT)
def test_end_of_turn_token_ends_generation(tmp_path, template):
    model_dir = tiny_model_dir(tmp_path / "m")
    (model_dir / "tokenizer.json").write_text((FIX / "tokenizer.json").read_text())
    tok = fixture_tokenizer()
    cfg = config.make_config({"model": str(model_dir), "template": template})
    end = tok.token_to_id(TURN_TOKENS[template][1])
    assert end in data.chat_eos_ids(load_model(model_dir), tok, cfg)
    assert GOLDEN["templates"][template]["eos_token"] == TURN_TOKENS[template][1]


def test_a_template_whose_markers_the_tokenizer_lacks_is_one_line(tmp_path):
    model_dir = tiny_model_dir(tmp_path / "m")  # ChatML markers only
    cfg = config.make_config({"model": str(model_dir), "template": "llama3-chat"})
    with pytest.raises(config.ConfigError, match=r"^template: llama3-chat needs <\|start_header_id\|>/<\|eot_id\|>"):
        data.chat_eos_ids(load_model(model_dir), load_tokenizer(model_dir), cfg)


def test_auto_picks_from_the_special_tokens_and_says_which(tmp_path, capsys):
    qwen = tiny_model_dir(tmp_path / "qwen")  # ChatML markers, model_type qwen2
    smol = tiny_model_dir(tmp_path / "smol", model_type="llama")  # ChatML markers, a Llama-architecture model
    llama = tiny_model_dir(tmp_path / "llama", model_type="llama")
    (llama / "tokenizer.json").write_text((FIX / "tokenizer.json").read_text())
    bare = tiny_model_dir(tmp_path / "bare")
    plain_tok = Tokenizer(models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
    plain_tok.pre_tokenizer = pre_tokenizers.Whitespace()
    plain_tok.save(str(bare / "tokenizer.json"))
    assert [pick_template(d)[0] for d in (qwen, smol, llama, bare)] == ["qwen-chat", "chatml", "llama3-chat", "plain"]
    cfg, _ = config.parse_command_line(["--model", str(llama), "--template", "auto"])
    assert cfg.template == "llama3-chat" and "--template auto: llama3-chat" in capsys.readouterr().out
    assert config.make_config({"template": "auto"}).template == "plain"  # the toy continues plain text
