"""One word -> token ids on every kind of tokenizer (vlmscope.words)."""

import numpy as np
import pytest

from vlmscope.heatmaps import stop_token_mask
from vlmscope.lens import LensResult
from vlmscope.organism.build import make_tokenizer as organism_tokenizer
from vlmscope.testing import make_tokenizer
from vlmscope.words import answer_ids, lens_ids, plural, vocabulary_ids, word_ids

MARK = {"organism": "", "sentencepiece": "▁", "bytelevel": "Ġ"}


@pytest.fixture(params=["organism", "sentencepiece", "bytelevel"])
def kind_tok(request):
    tok = organism_tokenizer() if request.param == "organism" else make_tokenizer(request.param)
    return request.param, tok


def toks(tok, ids):
    return tok.convert_ids_to_tokens(list(ids))


def test_running_text_variant_has_the_leading_space_mark(kind_tok):
    kind, tok = kind_tok
    w = word_ids(tok, "red")
    assert toks(tok, w.running) == [MARK[kind] + "red"]
    assert w.single and w.first == w.running[0]
    # the same id the word takes inside a real sentence
    sentence = tok("is there a red circle", add_special_tokens=False).input_ids
    assert w.first in sentence


def test_start_of_text_variant(kind_tok):
    kind, tok = kind_tok
    w = word_ids(tok, "red")
    # byte-level BPE adds no space at the start: "red" there is the bare piece
    assert toks(tok, w.start) == ["red" if kind == "bytelevel" else MARK[kind] + "red"]
    assert (w.start == w.running) == (kind != "bytelevel")


def test_capitals_and_plurals(kind_tok):
    kind, tok = kind_tok
    w = word_ids(tok, "circle")
    if kind == "organism":  # lowercases: capitals are the same word
        assert w.capital == w.running
    else:
        assert toks(tok, w.capital) == [MARK[kind] + "Circle"]
        assert w.capital != w.running
    if kind == "organism":  # a word-level vocabulary without "circles"
        assert w.plural == () and w.plural[:1] not in w.firsts()
    else:
        assert tok.decode(list(w.plural)).strip() == "circles"
    assert w.firsts() >= {w.running[0], w.capital[0]}
    assert plural("box") == "boxes" and plural("sky") == "skies" and plural("cat") == "cats"


@pytest.mark.parametrize("kind", ["sentencepiece", "bytelevel"])
def test_rare_word_gives_first_piece_and_whole_sequence(kind):
    tok = make_tokenizer(kind)
    w = word_ids(tok, "photosynthesis")
    assert len(w.running) >= 3 and not w.single
    assert w.first == w.running[0]
    assert toks(tok, w.running)[0].startswith(MARK[kind])
    assert tok.decode(list(w.running)).strip() == "photosynthesis"
    with pytest.raises(ValueError, match="single-token.*|3|tokens"):
        lens_ids(tok, "photosynthesis")


def test_answer_ids_follow_the_prompt(kind_tok):
    kind, tok = kind_tok
    # a prompt ending in a colon: the answer is generated after a space
    assert answer_ids(tok, "USER: what color ? ASSISTANT:", "red") == word_ids(tok, "red").running
    # a prompt ending in a newline (Qwen2-style turns): no space before the answer
    after_newline = answer_ids(tok, "assistant\n", "red")
    assert tok.decode(list(after_newline)) == "red"
    if kind != "organism":  # a piece without the space mark, as the model writes it after a newline
        assert not toks(tok, after_newline)[0].startswith(MARK[kind])
    with pytest.raises(ValueError, match="empty"):
        answer_ids(tok, "x", "  ")


def test_lens_share_finds_the_marked_token_issue_reproduction():
    """Issue 10: share of 'red' in a SentencePiece vocabulary was silently 0."""
    res = LensResult(top_ids=np.zeros((1, 2, 1), int), top_logprobs=np.zeros((1, 2, 1)), words=(),
                     word_ids=(), word_logprobs=np.zeros((1, 2, 0)), vocabulary=["▁red", "▁circle"])
    assert res.share([0, 1], ["red"]).tolist() == [1.0]
    assert res.share([0, 1], ["circle"]).tolist() == [0.0]
    with pytest.raises(ValueError, match="not one token"):
        res.share([0, 1], ["blue"])


@pytest.mark.parametrize("kind", ["sentencepiece", "bytelevel"])
def test_lens_share_through_the_tokenizer_and_the_vocabulary_agree(kind):
    tok = make_tokenizer(kind)
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    red, Red, bare = (tok.convert_tokens_to_ids(MARK[kind] + "red"),
                      tok.convert_tokens_to_ids(MARK[kind] + "Red"), tok.convert_tokens_to_ids("red"))
    assert lens_ids(tok, "red") == vocabulary_ids(vocab, "red") == {red, Red}
    top = np.array([red, Red, bare, 0])[None, :, None]
    for t in (tok, None):
        res = LensResult(top, np.zeros(top.shape), (), (), np.zeros((1, 4, 0)), vocab, tokenizer=t)
        # the mid-word piece "red" (as in "bo|red") is not the word
        assert res.share([0, 1, 2, 3], ["red"]).tolist() == [0.5]


def test_word_level_vocabulary_without_marks():
    assert vocabulary_ids(["<pad>", "red", "circle"], "red") == {1}


def test_stop_tokens_are_decided_per_tokenizer(kind_tok):
    kind, tok = kind_tok
    ids = tok("a red circle and the square ?", add_special_tokens=False).input_ids
    assert [t.strip("▁Ġ") for t in toks(tok, ids)][:6] == ["a", "red", "circle", "and", "the", "square"]
    stop = stop_token_mask(tok, ids)
    assert stop[:6] == [True, False, False, True, True, False] and all(stop[6:])


def test_bad_words():
    tok = make_tokenizer("bytelevel")
    for bad in ("", "  ", None):
        with pytest.raises(ValueError, match="non-empty"):
            word_ids(tok, bad)
    with pytest.raises(ValueError, match="'giraffe' is not in this tokenizer's vocabulary"):
        word_ids(organism_tokenizer(), "giraffe")
