"""What a benchmark question is: ``BenchmarkItem`` (question, options, answer, lazy image,
region, prompts), ``ImageRef``, the errors, and choice grading (``correct``)."""

from __future__ import annotations

import base64
import binascii
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from ...images import ImageError, to_rgb

BENCHMARKS = ("cv-bench", "mmvp", "mmstar")
PROMPT_STYLES = ("open", "choice", "native")
CHOICE_INSTRUCTION = "Answer with the option's letter."
LETTERS = string.ascii_uppercase

Box = tuple[float, float, float, float]


class BenchmarkError(ValueError):
    """A benchmark copy could not be read: a damaged file or an unexpected format."""


class BenchmarkNotFoundError(BenchmarkError, FileNotFoundError):
    """The folder holds none of the files of the benchmark's known layouts."""


class BenchmarkImageError(BenchmarkError, ImageError):
    """An item's image is missing or cannot be decoded (the message names the item)."""


# ------------------------------------------------------------------- images
class ImageRef:
    """Where an item's image lives: encoded bytes, base64 text or a file path.

    Immutable and cheap to copy; its ``repr`` names the origin, never the bytes,
    so items stay readable (and hashable into ``RunStore`` keys).
    """

    __slots__ = ("kind", "data", "origin")

    def __init__(self, kind: str, data, origin: str):
        if kind not in ("bytes", "base64", "path"):
            raise ValueError(f"image kind must be bytes, base64 or path, not {kind!r}")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "origin", origin)

    def __setattr__(self, name, value):
        raise AttributeError("ImageRef is immutable")

    def __repr__(self) -> str:
        return f"ImageRef({self.kind}, {self.origin})"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (ImageRef, (self.kind, self.data, self.origin))

    def load(self):
        """The image as RGB (``vlmscope.to_rgb``); raises ``ImageError``."""
        if self.kind == "path":
            path = Path(self.data)
            if not path.exists():  # MMVP: a copy may hold .png or .jpeg instead of .jpg
                alt = sorted(p for p in path.parent.glob(f"{path.stem}.*")
                             if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"))
                path = alt[0] if alt else path
            return to_rgb(path)
        data = self.data
        if self.kind == "base64":
            try:
                data = base64.b64decode("".join(str(data).split()), validate=True)
            except (binascii.Error, ValueError) as e:
                raise ImageError(f"the image is not valid base64 ({e})") from None
        return to_rgb(bytes(data))


# -------------------------------------------------------------------- items
@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark question about one image.

    Attributes
    ----------
    benchmark : "cv-bench", "mmvp" or "mmstar".
    id : stable identifier, ``"<benchmark>/<the benchmark's own index>"``.
    question : the bare question, without options or answer instructions.
    choices : the options' texts, letters stripped, in order (A, B, ...).
    answer : the correct option's text.
    answer_letter : the correct option's letter ("A", "B", ...).
    category : CV-Bench's task (Count, Relation, Depth, Distance) or MMStar's
        category; None for MMVP.
    subcategory : MMStar's ``l2_category``; CV-Bench's ``source`` (ADE20K,
        COCO, Omni3D); None for MMVP.
    split : CV-Bench's type ("2D", "3D"); "val" for MMStar; "test" for MMVP.
    region : the box (x0, y0, x1, y1), in the original image's pixels,
        enclosing every box the benchmark gives for the question; None if none.
    boxes : the benchmark's boxes as given (CV-Bench Relation, Depth, Distance).
    pair : MMVP's pair number (questions 1-2 are pair 1, 3-4 pair 2, ...).
    native_prompt : the text the benchmark's own evaluation asks, options included.
    meta : the remaining fields of the record (JSON-able), not compared.
    image_ref : where the image is; decoded only by ``image()``.
    """

    benchmark: str
    id: str
    question: str
    choices: tuple[str, ...]
    answer: str
    answer_letter: str
    category: str | None = None
    subcategory: str | None = None
    split: str | None = None
    region: Box | None = None
    boxes: tuple[Box, ...] = ()
    pair: int | None = None
    native_prompt: str | None = None
    meta: dict = field(default_factory=dict, compare=False, repr=False)
    image_ref: ImageRef | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        object.__setattr__(self, "boxes", tuple(tuple(b) for b in self.boxes))
        if not self.choices:
            raise BenchmarkError(f"{self.id}: no options")
        i = LETTERS.find(self.answer_letter) if len(self.answer_letter) == 1 else -1
        if i < 0 or i >= len(self.choices) or self.choices[i] != self.answer:
            raise BenchmarkError(f"{self.id}: answer {self.answer_letter!r} ({self.answer!r}) is "
                                 f"not one of the options {list(self.choices)}")

    @property
    def letters(self) -> tuple[str, ...]:
        """The options' letters, ("A", "B", ...)."""
        return tuple(LETTERS[: len(self.choices)])

    def image(self):
        """Decode the image now and return it as an RGB PIL image.

        Raises
        ------
        BenchmarkImageError
            The file is missing or the bytes cannot be decoded; the message
            names the item and where its image was to come from.
        """
        if self.image_ref is None:
            raise BenchmarkImageError(f"{self.id}: the item has no image")
        try:
            return self.image_ref.load()
        except ImageError as e:
            raise BenchmarkImageError(f"{self.id}: could not load its image "
                                      f"({self.image_ref.origin}): {e}") from None

    def prompt(self, style: str = "open") -> str:
        """The text to ask the model.

        Parameters
        ----------
        style : "open" (default) the bare question; "choice" the question, the
            lettered options one a line ("A. ...") and "Answer with the
            option's letter."; "native" the benchmark's own prompt.
        """
        if style == "open":
            return self.question
        if style == "choice":
            opts = "\n".join(f"{letter}. {text}" for letter, text in zip(LETTERS, self.choices))
            return f"{self.question}\n{opts}\n{CHOICE_INSTRUCTION}"
        if style == "native":
            return self.native_prompt or self.prompt("choice")
        raise ValueError(f"unknown prompt style {style!r}; known: {', '.join(PROMPT_STYLES)}")


# ------------------------------------------------------------------ grading
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty".split())}
_ARTICLES = {"a", "an", "the"}


def _norm(text: str) -> str:
    """Lower case, punctuation dropped, number words as digits, articles dropped."""
    toks = re.findall(r"[a-z0-9]+", str(text).lower())
    return " ".join(_NUMBER_WORDS.get(t, t) for t in toks if t not in _ARTICLES)


def _stated_letter(text: str, n: int) -> tuple[str | None, str]:
    """The option letter an answer states, and the text after it (or None, text)."""
    t = str(text).strip()
    for pat in (r"^\(\s*([A-Za-z])\s*\)\s*(.*)$",               # "(B)", "(b) right"
                r"^([A-Za-z])\s*(?:[.,:)\]]\s*(.*)|$)",          # "B", "b.", "B) right", "B: x"
                r"^(?:the\s+)?(?:correct\s+)?(?:answer|option|choice)\s*(?:is\s*)?:?\s*"
                r"\(?([A-Za-z])\)?\s*(?:[.,;:!)]\s*(.*)|$)"):      # "Answer: B", "option (b)."
        m = re.match(pat, t, re.S | re.I)
        if m:
            letter = m.group(1).upper()
            if LETTERS.find(letter) < n:
                return letter, (m.group(2) or "").strip()
    m = re.search(r"\b(?:answer|option|choice)\s*(?:is\b\s*)?:?\s*\(?([A-Za-z])\)?(?=\s*(?:[.,;:!)]|$))",
                  t, re.I)
    if m and LETTERS.find(m.group(1).upper()) < n:
        return m.group(1).upper(), ""
    return None, t


def _named_option(text: str, choices) -> int | None:
    """The one option whose text the answer names (longest phrase wins), else None."""
    ans = f" {_norm(text)} "
    opts = [_norm(c) for c in choices]
    if ans.strip() in opts and opts.count(ans.strip()) == 1:
        return opts.index(ans.strip())
    hits = [i for i, o in enumerate(opts) if o and f" {o} " in ans]
    # drop an option named only as part of a longer one ("red" inside "dark red")
    hits = [i for i in hits if not any(j != i and opts[i] != opts[j] and f" {opts[i]} " in f" {opts[j]} "
                                       for j in hits)]
    return hits[0] if len(hits) == 1 else None


def correct(item: BenchmarkItem, answer_text: str) -> bool:
    """Whether a model's answer to the "choice" prompt picks the right option.

    The answer may state the letter ("B", "(b)", "B.", "b) right",
    "The answer is B.") or the option's text ("right", "The bottle is closer."),
    in any case and punctuation; number words count as digits ("two" = "2").
    A letter followed by another option's text, an answer naming several
    options, or one naming none is wrong.

    Parameters
    ----------
    item : the question.
    answer_text : the model's reply.
    """
    if not isinstance(item, BenchmarkItem):
        raise TypeError(f"expected a BenchmarkItem, not {type(item).__name__}")
    if answer_text is None or not str(answer_text).strip():
        return False
    n = len(item.choices)
    letter, rest = _stated_letter(answer_text, n)
    if letter is not None:
        if rest:
            named = _named_option(rest, item.choices)
            if named is not None and LETTERS[named] != letter and \
                    _norm(rest) == _norm(item.choices[named]):
                return False  # "A. television" where A is the lamp: contradictory
        return letter == item.answer_letter
    named = _named_option(answer_text, item.choices)
    return named is not None and LETTERS[named] == item.answer_letter
