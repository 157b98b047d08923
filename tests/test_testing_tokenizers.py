"""The trained tokenizers of the real kinds (vlmscope.testing.tokenizers)."""

import pytest

from vlmscope.testing import make_tokenizer
from vlmscope.testing.tokenizers import _trained_json

MARK = {"sentencepiece": "▁", "bytelevel": "Ġ"}


@pytest.fixture(params=["sentencepiece", "bytelevel"])
def kind(request):
    return request.param


def pieces(tok, text):
    return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False).input_ids)


def test_word_in_running_text_carries_the_space_mark(kind):
    tok = make_tokenizer(kind)
    assert pieces(tok, "is there a red circle")[3:] == [MARK[kind] + "red", MARK[kind] + "circle"]


def test_start_of_text_follows_the_family(kind):
    tok = make_tokenizer(kind)
    # Llama-style tokenizers prefix the first word; Qwen2-style ones do not.
    assert pieces(tok, "red")[0] == ("▁red" if kind == "sentencepiece" else "red")


def test_no_lowercasing_and_capitals_are_other_tokens(kind):
    tok = make_tokenizer(kind)
    assert pieces(tok, "a Red")[-1] == MARK[kind] + "Red"
    assert tok.convert_tokens_to_ids(MARK[kind] + "Red") != tok.convert_tokens_to_ids(MARK[kind] + "red")


def test_rare_word_splits_into_several_pieces(kind):
    tok = make_tokenizer(kind)
    got = pieces(tok, "a photosynthesis")
    assert len(got) >= 4
    assert tok.decode(tok("a photosynthesis", add_special_tokens=False).input_ids) == "a photosynthesis"


def test_emoji_round_trips(kind):
    tok = make_tokenizer(kind)
    text = "a fox 🦊 here"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids) == text
    if kind == "sentencepiece":  # byte fallback: the emoji's four UTF-8 bytes
        assert ["<0xF0>", "<0x9F>", "<0xA6>", "<0x8A>"] == [p for p in pieces(tok, text) if p.startswith("<0x")]
        assert tok.unk_token_id not in ids


def test_special_tokens_and_extras_are_single_tokens(kind):
    extra = ["<image>", "<|image_pad|>"]
    tok = make_tokenizer(kind, extra_special_tokens=extra)
    for t in extra:
        ids = tok(f"look {t} here", add_special_tokens=False).input_ids
        assert tok.convert_tokens_to_ids(t) in ids
        assert tok.convert_tokens_to_ids(t) != tok.unk_token_id
    assert set(extra) <= set(tok.all_special_tokens)
    if kind == "sentencepiece":
        assert tok("red").input_ids[0] == tok.bos_token_id == tok.convert_tokens_to_ids("<s>")
    else:
        assert tok.bos_token is None and tok("red").input_ids == tok("red", add_special_tokens=False).input_ids


def test_custom_roles():
    tok = make_tokenizer("sentencepiece", special_tokens={"bos_token": "<bos>", "eos_token": "<eos>",
                                                         "pad_token": "<pad>", "unk_token": "<unk>"})
    assert (tok.bos_token, tok.eos_token) == ("<bos>", "<eos>")
    assert tok("red").input_ids[0] == tok.convert_tokens_to_ids("<bos>")
    with pytest.raises(ValueError, match="roles"):
        make_tokenizer("sentencepiece", special_tokens={"cls": "<cls>"})
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        make_tokenizer("wordpiece")


def test_training_is_deterministic_and_cached(kind):
    a = make_tokenizer(kind, vocab_size=700)
    _trained_json.cache_clear()
    b = make_tokenizer(kind, vocab_size=700)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    c = make_tokenizer(kind, vocab_size=700)
    assert c is not b  # a fresh object each call, from the cached training
    c.add_tokens(["zzzz"])
    assert "zzzz" not in make_tokenizer(kind, vocab_size=700).get_vocab()
    assert len(a) <= 700
