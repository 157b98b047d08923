"""Small tokenizers for tests: of the real kinds, trained here, and word-level ones.

Real checkpoints use sub-word tokenizers, not the organism's word-level one,
and code that turns words into token ids must be checked on them:

- ``"sentencepiece"`` (Llama, LLaVA, Gemma, PaliGemma): a ``Metaspace``
  pre-tokenizer that writes a space as ``▁`` and prefixes the first word
  (``"red"`` -> ``▁red``), BPE with byte fallback (a character the vocabulary
  lacks becomes its UTF-8 bytes ``<0xF0><0x9F>...``), no lowercasing, BOS
  added in front.
- ``"bytelevel"`` (Qwen2-VL, Qwen2.5-VL, InternVL3, SmolVLM): GPT-2 style
  byte-level BPE, a space becomes ``Ġ`` and belongs to the following word,
  no prefix space at the start of the text, no BOS added.

Training is deterministic and cached in-process: the same arguments give an
identical tokenizer (a fresh object each call, so callers may add tokens).

>>> tok = make_tokenizer("sentencepiece")
>>> tok.convert_ids_to_tokens(tok("a red circle", add_special_tokens=False).input_ids)
['▁a', '▁red', '▁circle']
>>> tok = make_tokenizer("bytelevel")
>>> tok.convert_ids_to_tokens(tok("a red circle").input_ids)
['a', 'Ġred', 'Ġcircle']

``word_tokenizer`` and ``qwen_tokenizer`` are word-level tokenizers over the
synthetic world's words with a family's special tokens, for the tiny models
(``testing.tiny``) where the kind of vocabulary does not matter.
"""

from __future__ import annotations

import json
from functools import lru_cache

from ..datasets.synthetic import COLORS, COLS, DESCRIBE, NUMBERS, ROWS, SHAPES, question
from ..judge import COCO_SYNONYMS

KINDS = ("sentencepiece", "bytelevel")

# Role -> token, per kind: Llama / LLaVA style and Qwen2 style.
DEFAULT_SPECIAL_TOKENS = {
    "sentencepiece": {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>",
                      "pad_token": "<pad>"},
    "bytelevel": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
}
_ROLES = ("unk_token", "bos_token", "eos_token", "pad_token")


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _corpus() -> tuple[str, ...]:
    """Sentences with the synthetic world's words, COCO names, chat words, capitals, plurals."""
    lines: list[str] = []
    colors, shapes = list(COLORS), list(SHAPES)
    for i, c in enumerate(colors):
        for j, s in enumerate(shapes):
            r, k = ROWS[(i + j) % 3], COLS[(i * 2 + j) % 3]
            lines += [
                *(question(kind, color=c, shape=s) for kind in ("color", "shape", "where", "exists")),
                "yes", "no", c, s,
                f"a {c} {s} at {r} {k}.", f"The {c} {s} is at the {r} {k}.",
                f"{c.capitalize()} {s}s and {_plural(s)} are shapes.",
                f"There are {NUMBERS[(i + j) % 5]} {c} {_plural(s)} in the image.",
                f"{s.capitalize()}: {c}. {c.capitalize()}, {s}.",
                f"A {c.capitalize()} {s.capitalize()} and The {c.capitalize()} {_plural(s).capitalize()}",
            ]
    lines += [f"{question('count')} {n}" for n in NUMBERS]
    lines += [DESCRIBE, "Describe this image in detail.", "colour, color, colors"]
    for canonical, names in COCO_SYNONYMS.items():
        for name in dict.fromkeys((canonical,) + names):
            lines += [f"There is a {name} in the picture.", f"a {name} next to the {_plural(name)}",
                      f"{name.capitalize()}s and {_plural(name)}.", f"{name.capitalize()} on a table."]
    lines += [
        "USER: <image>\nWhat is in this image? ASSISTANT: A photo.",
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
        "<|im_start|>user\nDescribe the picture.<|im_end|>\n<|im_start|>assistant\n",
        "<start_of_turn>user\nAnswer the question.<end_of_turn>\n<start_of_turn>model\n",
        "User: Look at the image and answer. Assistant: Sure, here it is.",
        "Question: What objects are visible? Answer: a person, a dog and two cars.",
        "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 100",
    ]
    # Frequent words must become whole tokens before the merges run out.
    return tuple(lines) * 3


CORPUS: tuple[str, ...] = _corpus()


def _special_list(kind: str, special: tuple[tuple[str, str], ...], extra: tuple[str, ...]) -> list[str]:
    roles = dict(special)
    out = [roles[r] for r in _ROLES if r in roles] + [v for r, v in special if r not in _ROLES]
    return list(dict.fromkeys(out + list(extra)))


@lru_cache(maxsize=32)
def _trained_json(kind: str, special: tuple[tuple[str, str], ...], extra: tuple[str, ...],
                  vocab_size: int, corpus: tuple[str, ...]) -> str:
    """The trained tokenizer as JSON (cached: training takes a fraction of a second)."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    specials = _special_list(kind, special, extra)
    roles = dict(special)
    if kind == "sentencepiece":
        byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
        pre = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
        trainer_size = max(vocab_size - len(byte_tokens), len(specials) + 1)
        alphabet: list[str] = []
    else:
        byte_tokens = []
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        trainer_size = vocab_size
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    unk = roles.get("unk_token")
    tok = Tokenizer(BPE(unk_token=unk))
    tok.pre_tokenizer = pre
    trainer = BpeTrainer(vocab_size=trainer_size, min_frequency=1, special_tokens=specials,
                         initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    trained = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # Ids: special tokens first, then (sentencepiece) the 256 byte tokens, then the pieces.
    order = specials + byte_tokens + [t for t, _ in trained if t not in specials]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(order))}
    out = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk,
                        byte_fallback=kind == "sentencepiece", fuse_unk=kind == "sentencepiece"))
    out.pre_tokenizer = pre
    if kind == "sentencepiece":
        out.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        bos = roles.get("bos_token")
        if bos is not None:
            out.post_processor = processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    else:
        out.decoder = decoders.ByteLevel()
        out.post_processor = processors.ByteLevel(trim_offsets=False)
    out.add_special_tokens(specials)
    return out.to_str()


def make_tokenizer(kind: str, *, special_tokens: dict[str, str] | None = None,
                   extra_special_tokens: list[str] = (), vocab_size: int = 1200,
                   corpus: list[str] | None = None):
    """A ``PreTrainedTokenizerFast`` of ``kind`` ("sentencepiece" or "bytelevel").

    ``special_tokens`` maps roles (``bos_token``, ``eos_token``, ``pad_token``,
    ``unk_token``) to strings (default: Llama's ``<s>``/``</s>``/``<unk>`` plus
    ``<pad>``, or Qwen2's ``<|im_end|>``/``<|endoftext|>``); each of
    ``extra_special_tokens`` (e.g. ``"<image>"``) becomes one special token.
    The special tokens take the first ids, in role order, then the extras.
    ``vocab_size`` bounds the whole vocabulary (a small ``corpus`` may stop
    the merges earlier); ``corpus`` defaults to ``CORPUS``.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {', '.join(KINDS)}")
    special = dict(DEFAULT_SPECIAL_TOKENS[kind] if special_tokens is None else special_tokens)
    unknown = sorted(set(special) - set(_ROLES))
    if unknown:
        raise ValueError(f"unknown special-token roles {unknown}; known: {', '.join(_ROLES)}")
    if isinstance(extra_special_tokens, str):
        raise TypeError("extra_special_tokens is a list of strings, not one string")
    if vocab_size < 300 and kind == "sentencepiece":
        raise ValueError(f"vocab_size {vocab_size} leaves no room beside the 256 byte tokens")
    lines = CORPUS if corpus is None else tuple(corpus)
    if not lines:
        raise ValueError("the corpus is empty")
    key = tuple((r, special[r]) for r in _ROLES if r in special)
    text = _trained_json(kind, key, tuple(extra_special_tokens), int(vocab_size), lines)
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(text), **special)
    if extra_special_tokens:
        fast.add_special_tokens({"additional_special_tokens": list(extra_special_tokens)})
    return fast


# ------------------------------------------------------------ word-level tokenizers
def word_tokenizer(*, bos, eos, pad, unk="<unk>", named=None, specials=(), add_bos=False,
                   chat_template=None, text_tokens=("\n\n", "\n")):
    """A word-level ``PreTrainedTokenizerFast`` with a family's special tokens (offline).

    Parameters
    ----------
    bos, eos, pad, unk : the named special tokens (``bos=None`` for families without one).
    named : extra named special tokens, e.g. ``{"image_token": "<image>"}``; the tokenizer
        then answers ``tok.image_token`` and ``tok.image_token_id``.
    specials : further special tokens (turn markers such as ``<start_of_turn>``).
    add_bos : whether plain tokenisation prepends ``bos`` (as the real tokenizer does).
    text_tokens : non-special tokens matched verbatim (newlines, which the word-level
        pre-tokenizer would otherwise drop).
    """
    from tokenizers import AddedToken, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from ..organism.build import WORDS

    named = dict(named or {})
    base = [t for t in (pad, eos, bos, unk) if t is not None]
    special = base + [t for t in list(named.values()) + list(specials) if t not in base]
    words = special + list(text_tokens) + [w for w in WORDS + ["model", "system"] if w not in special]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
    tok = Tokenizer(WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=unk, pad_token=pad,
        extra_special_tokens=named, add_bos_token=add_bos and bos is not None, add_eos_token=False)
    extra = [t for t in special if t not in base]
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    fast.add_tokens([AddedToken(t, normalized=False, special=False) for t in text_tokens])
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def qwen_tokenizer():
    """A word-level fast tokenizer with Qwen's special tokens and chat template (no BOS)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    from ..organism.build import WORDS
    from .templates import QWEN_SPECIAL, QWEN_TEMPLATE

    words = sorted(set(WORDS) | {"system", "you", "helpful"})
    vocab = {w: i for i, w in enumerate(QWEN_SPECIAL + ["<unk>"] + words)}
    tok = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    fast.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL})
    fast.chat_template = QWEN_TEMPLATE
    return fast
