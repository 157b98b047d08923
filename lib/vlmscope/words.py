"""One way to turn a word into token ids, on any tokenizer.

A word has several spellings in ids. On a word-level tokenizer (the
organism's) ``red`` is one id wherever it stands; on a SentencePiece one
(Llama, LLaVA, Gemma) it is ``▁red`` after a space; on a byte-level BPE one
(Qwen2, InternVL3, SmolVLM) ``Ġred`` after a space but ``red`` at the very
start of the text, which is also the piece inside "bo|red". A rare word is
several pieces. ``word_ids`` computes every variant by tokenizing the word in
context, so no code looks a word up in the vocabulary by its spelling.

Which variant each use takes:

- the logit lens (``LensResult.share``, ``image_lens(words=...)``): the
  running-text variant and its capitalised form, single pieces only (a lens
  position predicts one token; a word of several pieces is an error naming
  its pieces);
- answers scored or compared after a prompt (``VLM.score`` with text,
  last-position knockout's answer id, the ablation's fall-back attribution
  target): ``answer_ids``, the ids the answer takes right after the prompt
  text, with a space before it when the prompt does not end in whitespace
  (how "ASSISTANT: red" is generated); its first id is the one predicted at
  the prompt's last position;
- stop tokens of a heatmap's answer are decided the other way round, id to
  text (``heatmaps.stop_token_mask`` decodes each id), so they need no word
  lookup.

>>> ids = word_ids(tokenizer, "red")          # doctest: +SKIP
>>> ids.running, ids.start, ids.capital, ids.plural      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

# Marks that tokenizers write for "a space before this piece".
SPACE_MARKS = ("▁", "Ġ", " ")


def plural(word: str) -> str:
    """The regular English plural (``box`` -> ``boxes``, ``sky`` -> ``skies``)."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if len(word) > 1 and word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def ids_after(tokenizer, prefix: str, text: str) -> tuple[int, ...]:
    """The ids ``text`` takes when it directly follows ``prefix`` in one string.

    Tokenizes ``prefix + text`` and drops the prefix's own ids. Where the two
    merge across the boundary (the prefix's ids are not a prefix of the
    whole), the text is tokenized alone.
    """
    head = _encode(tokenizer, prefix) if prefix else []
    whole = _encode(tokenizer, prefix + text)
    if whole[:len(head)] == head and len(whole) > len(head):
        return tuple(whole[len(head):])
    return tuple(_encode(tokenizer, text))


@dataclass(frozen=True)
class WordIds:
    """The ids of one word in its usual variants; each a tuple of one or more ids.

    A variant the vocabulary cannot write (it would be the unknown token, e.g.
    a plural missing from a word-level vocabulary) is the empty tuple.
    """

    word: str
    running: tuple[int, ...]  # after a space inside a sentence ("a red")
    start: tuple[int, ...]  # at the very start of the text
    capital: tuple[int, ...]  # capitalised, after a space ("a Red")
    plural: tuple[int, ...]  # regular plural, after a space ("a reds")

    @property
    def first(self) -> int:
        """The first id in running text (the token a model predicts for the word)."""
        return self.running[0]

    @property
    def single(self) -> bool:
        """Whether the word is one token in running text."""
        return len(self.running) == 1

    def firsts(self, variants=("running", "start", "capital", "plural")) -> set[int]:
        """The first id of each of ``variants`` the vocabulary can write."""
        return {getattr(self, v)[0] for v in variants if getattr(self, v)}


def word_ids(tokenizer, word: str) -> WordIds:
    """Every variant of ``word`` in ``tokenizer``'s ids (see the module text for who uses which)."""
    if not isinstance(word, str) or not word.strip():
        raise ValueError(f"a word must be a non-empty string, not {word!r}")
    word = word.strip()
    unk = getattr(tokenizer, "unk_token_id", None)

    def known(ids):  # a variant the vocabulary can only write as <unk> has no ids
        return () if unk is not None and unk in ids else ids

    running = known(ids_after(tokenizer, "a", " " + word))
    if not running:
        raise ValueError(f"{word!r} is not in this tokenizer's vocabulary (it encodes as the unknown token)")
    cap = word[:1].upper() + word[1:]
    return WordIds(word=word, running=running, start=known(tuple(_encode(tokenizer, word))),
                   capital=known(ids_after(tokenizer, "a", " " + cap)),
                   plural=known(ids_after(tokenizer, "a", " " + plural(word))))


def answer_ids(tokenizer, prompt: str, answer: str) -> tuple[int, ...]:
    """The ids ``answer`` takes right after ``prompt`` (a space between unless the prompt ends in one)."""
    answer = answer.strip()
    if not answer:
        raise ValueError("the answer is empty")
    sep = "" if not prompt or prompt[-1].isspace() else " "
    return ids_after(tokenizer, prompt, sep + answer)


def lens_ids(tokenizer, word: str) -> set[int]:
    """The single-token ids a logit-lens position reads as ``word``: running text, lower and capitalised.

    A word of several pieces raises ``ValueError`` naming its pieces.
    """
    w = word_ids(tokenizer, word)
    if not w.single:
        pieces = tokenizer.convert_ids_to_tokens(list(w.running))
        raise ValueError(f"{word!r} is {len(w.running)} tokens in this vocabulary ({' '.join(pieces)}); "
                         "the lens reads single-token words only")
    return {w.running[0]} | ({w.capital[0]} if len(w.capital) == 1 else set())


def vocabulary_ids(vocabulary, word: str) -> set[int]:
    """``lens_ids`` from a vocabulary list alone (id -> token text), for results saved without a tokenizer.

    A token counts when it is the word or its capitalised form, written with
    the vocabulary's space mark (``▁red``, ``Ġred``) if the vocabulary uses
    one, else bare (a word-level vocabulary). A word with no such token raises
    ``ValueError``: a share of 0 would look like a finding.
    """
    word = word.strip()
    forms = {word, word[:1].upper() + word[1:]}
    marks = [m for m in SPACE_MARKS[:2] if any(str(t).startswith(m) for t in vocabulary)]
    wanted = {m + f for m in marks for f in forms} if marks else forms
    ids = {i for i, t in enumerate(vocabulary) if t in wanted}
    if not ids:
        raise ValueError(f"{word!r} is not one token in this vocabulary (looked for "
                         f"{', '.join(sorted(wanted))}); the lens reads single-token words only")
    return ids
