"""Local copies of CV-Bench, MMVP and MMStar, read in their published layouts.

You download a benchmark yourself and pass the folder; nothing is fetched.
``load_benchmark`` finds the layout inside the folder and returns one
``BenchmarkItem`` per question: the bare question, its options with the
letters stripped, the correct option, a lazily decoded image and, where the
benchmark provides boxes (CV-Bench), the region the question is about.

Layouts read (a folder, or one of these files passed directly):

``cv-bench`` (https://huggingface.co/datasets/nyu-visionx/CV-Bench)
    ``test_2d.parquet`` and/or ``test_3d.parquet`` (the current layout), or
    the older ``test.parquet``, or ``test_2d.jsonl`` / ``test_3d.jsonl`` /
    ``test.jsonl`` with the ``img/`` folder their ``filename`` field names.
    Fields: ``idx`` (global: 3D rows follow the 2D ones), ``type`` (2D, 3D),
    ``task`` (Count, Relation, Depth, Distance), ``image`` ({"bytes", "path"}),
    ``question``, ``choices``, ``answer`` ("(A)"), ``prompt`` (question, choices
    and "Select from the following choices."), ``filename``, ``source``,
    ``source_dataset``, ``source_filename``, ``target_class``, ``target_size``
    and ``bbox``: the boxes drawn on the image (x0, y0, x1, y1 in its pixels),
    or null (Count).
``mmvp`` (https://huggingface.co/datasets/MMVP/MMVP, github.com/tsb0601/MMVP)
    ``Questions.csv`` (Index, Question, Options "(a) Open (b) Closed",
    Correct Answer "(a)") next to ``MMVP Images/<Index>.jpg``; or parquet files
    with those columns and an ``image`` column (lmms-lab-eval/MMVP's
    ``data/train-*.parquet``). Questions come in pairs (1-2, 3-4, ...) that
    share the question and differ in the image and answer.
``mmstar`` (https://huggingface.co/datasets/Lin-Chen/MMStar)
    ``mmstar.parquet`` (or the Hub's converted ``val/*.parquet``,
    ``val-*.parquet``, ``data/*.parquet``) with ``index``, ``question`` (the
    options inside it: "...\\nOptions: A: ..., B: ..."), ``image`` (bytes
    struct, bytes or base64), ``answer`` (a letter), ``category``,
    ``l2_category`` and ``meta_info``; or ``MMStar.tsv`` (base64 images).

>>> items = load_benchmark("mmvp", "data/MMVP", limit=2)         # doctest: +SKIP
>>> items[0].question, items[0].choices, items[0].answer         # doctest: +SKIP
("Are the butterfly's wings closer to being open or closed?", ('Open', 'Closed'), 'Open')
>>> items[0].prompt("choice")                                    # doctest: +SKIP
"Are the butterfly's wings closer to being open or closed?\\nA. Open\\nB. Closed\\nAnswer with the option's letter."
>>> correct(items[0], "(a) open"), correct(items[0], "B")        # doctest: +SKIP
(True, False)

Open-ended answers are graded by the project's judges (``vlmscope.judge``),
which compare two texts: ``judge.compare(model_text, item.answer)``.

Notes
-----
The encoded image bytes of parquet and TSV copies stay in memory with the
items (about the size of the files read; use ``limit`` or ``split`` to read
less); decoded images are never kept. In ``RunStore`` keys use ``item.id``.
CV-Bench's boxes are not reliably in the red/blue/green order the question
names (reported in github.com/haoningwu3639/SpatialScore issue #3), so
``region`` is the box enclosing all of them and ``boxes`` keeps them as given.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import math
import os
import re
import string
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..images import ImageError, to_rgb

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


# ------------------------------------------------------------------ loading
def load_benchmark(name: str, path: str | os.PathLike, limit: int | None = None,
                   split: str | None = None) -> list[BenchmarkItem]:
    """Read a local copy of a benchmark.

    Parameters
    ----------
    name : "cv-bench", "mmvp" or "mmstar" (case, "-" and "_" ignored).
    path : the folder holding the benchmark's files (or one of those files).
    limit : read at most this many items, in file order (after ``split``).
    split : CV-Bench: "2D" or "3D" (None: both, 2D first); MMStar: "val";
        MMVP: "test". None reads everything.

    Returns
    -------
    list of BenchmarkItem, in the benchmark's order.

    Raises
    ------
    ValueError
        Unknown name, split or limit.
    BenchmarkNotFoundError
        The path holds none of the benchmark's files (the message lists them).
    BenchmarkError
        A file is damaged or lacks the fields the benchmark publishes.
    """
    key = re.sub(r"[-_\s]", "", str(name).lower())
    loaders = {"cvbench": _load_cvbench, "mmvp": _load_mmvp, "mmstar": _load_mmstar}
    if key not in loaders:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, not {limit!r}")
    root = Path(path).expanduser()
    if not root.exists():
        raise BenchmarkNotFoundError(f"{root} does not exist; {_EXPECTED[key]}")
    if limit == 0:
        return []
    items = []
    for item in loaders[key](root, split):
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    return items


_EXPECTED = {
    "cvbench": ("a CV-Bench copy (huggingface.co/datasets/nyu-visionx/CV-Bench) holds "
                "test_2d.parquet and/or test_3d.parquet, or test.parquet, or test_2d.jsonl / "
                "test_3d.jsonl / test.jsonl with the img/ folder they name"),
    "mmvp": ("an MMVP copy (huggingface.co/datasets/MMVP/MMVP) holds Questions.csv and the "
             "folder 'MMVP Images/' (1.jpg ... 300.jpg), or parquet files with the columns Index, "
             "Question, Options, Correct Answer and image (data/train-*.parquet of lmms-lab-eval/MMVP)"),
    "mmstar": ("an MMStar copy (huggingface.co/datasets/Lin-Chen/MMStar) holds mmstar.parquet (or "
               "val/*.parquet, val-*.parquet, data/*.parquet) or MMStar.tsv"),
}


def _not_found(key: str, root: Path) -> BenchmarkNotFoundError:
    try:
        entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    except OSError:
        entries = []
    shown = ", ".join(entries[:12]) + (f", ... ({len(entries)} entries)" if len(entries) > 12 else "")
    name = {"cvbench": "CV-Bench", "mmvp": "MMVP", "mmstar": "MMStar"}[key]
    return BenchmarkNotFoundError(f"no {name} copy found in {root}: {_EXPECTED[key]}. "
                                  f"Found: {shown or 'nothing'}")


def _find(root: Path, patterns) -> list[Path]:
    """Files matching the first pattern (in order) that matches any; [root] if root is a file."""
    for pat in patterns:
        found = sorted(p for p in root.glob(pat) if p.is_file())
        if found:
            return found
    return []


# ---------------------------------------------------------------- readers
def _parquet_rows(path: Path, columns_needed=(), batch_size: int = 64) -> Iterator[dict]:
    """Rows of a parquet file as dicts, read a batch at a time; clear errors on damage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
    except (pa.ArrowException, OSError, ValueError) as e:
        raise BenchmarkError(f"could not read {path}: {e}. The file looks damaged or incomplete "
                             "(an interrupted download?); download it again.") from None
    _require(path, names, columns_needed)
    try:
        for batch in pf.iter_batches(batch_size=batch_size):
            yield from batch.to_pylist()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise BenchmarkError(f"could not read {path}: {e}. The file looks damaged or incomplete "
                             "(an interrupted download?); download it again.") from None


def _jsonl_rows(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise BenchmarkError(f"{path} line {n} is not JSON ({e}); the file looks damaged"
                                     ) from None
            if not isinstance(row, dict):
                raise BenchmarkError(f"{path} line {n} is not a JSON object")
            yield row


def _table_rows(path: Path, sep: str) -> Iterator[dict]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # MMStar.tsv holds base64 images in cells
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f, delimiter=sep)
            if reader.fieldnames is None:
                raise BenchmarkError(f"{path} is empty")
            reader.fieldnames = [c.strip() for c in reader.fieldnames]
            for row in reader:
                extra = row.pop(None, None)
                if extra and any(str(c).strip() for c in extra):
                    raise BenchmarkError(f"{path} line {reader.line_num} has more cells than the "
                                         f"header; the file looks damaged")
                yield row
    except (csv.Error, UnicodeDecodeError) as e:
        raise BenchmarkError(f"could not read {path}: {e}; the file looks damaged") from None


def _require(path: Path, names, needed):
    """``needed``: column names, or tuples of alternatives."""
    have = set(names)
    missing = [alt if isinstance(alt, str) else " or ".join(alt) for alt in needed
               if not (alt in have if isinstance(alt, str) else have.intersection(alt))]
    if missing:
        raise BenchmarkError(f"{path} lacks the column(s) {', '.join(missing)}; it has "
                             f"{', '.join(n for n in names if not n.startswith('__')) or 'none'}")


# ------------------------------------------------------------- field helpers
def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (isinstance(value, str) and not value.strip())


def _text(value) -> str | None:
    return None if _blank(value) else str(value).strip()


def _letter(value) -> str | None:
    """"(A)", "A", "(a)", "a." -> "A"; anything else None."""
    if _blank(value):
        return None
    m = re.fullmatch(r"\s*\(?\s*([A-Za-z])\s*\)?\s*[.:]?\s*", str(value))
    return m.group(1).upper() if m else None


def _image_ref(value, base: Path, origin: str) -> ImageRef | None:
    """An ``ImageRef`` from a Hugging Face image struct, bytes, base64 text or a path."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return ImageRef("bytes", value["bytes"], origin)
        value = value.get("path")
    if _blank(value):
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ImageRef("bytes", bytes(value), origin)
    text = str(value).strip()
    compact = "".join(text.split())
    looks_b64 = len(compact) >= 64 and re.fullmatch(r"[A-Za-z0-9+/]+=*", compact) is not None
    if re.search(r"\.(jpe?g|png|webp|bmp|gif|tiff?)$", text, re.I) or not looks_b64:
        p = Path(text)
        return ImageRef("path", p if p.is_absolute() else base / p, origin)
    return ImageRef("base64", text, origin)


def _boxes(value, where: str) -> tuple[Box, ...]:
    """CV-Bench's ``bbox``: null, one [x0, y0, x1, y1], or a list of them (JSON text too)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if _blank(value):
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise BenchmarkError(f"{where}: bbox {value[:80]!r} is not a list of boxes") from None
    if not isinstance(value, (list, tuple)) or not value:
        return ()
    if all(isinstance(v, (int, float)) for v in value):
        value = [value]
    out = []
    for b in value:
        b = b.tolist() if hasattr(b, "tolist") else b
        if not isinstance(b, (list, tuple)) or len(b) != 4 or \
                not all(isinstance(v, (int, float)) and math.isfinite(v) for v in b):
            raise BenchmarkError(f"{where}: bbox {value!r} is not a list of [x0, y0, x1, y1] boxes")
        x0, y0, x1, y1 = (float(v) for v in b)
        out.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    return tuple(out)


def _union(boxes) -> Box | None:
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _jsonable(value):
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (bytes, bytearray)):
        return None
    return value


def _native_id(value, fallback: str) -> str:
    if _blank(value):
        return fallback
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


# ------------------------------------------------------------------ CV-Bench
_CV_SPLITS = {"2d": "2D", "3d": "3D"}


def _load_cvbench(root: Path, split: str | None) -> Iterator[BenchmarkItem]:
    want = None
    if split is not None:
        want = _CV_SPLITS.get(str(split).strip().lower())
        if want is None:
            raise ValueError(f"CV-Bench splits are '2D' and '3D' (None reads both), not {split!r}")
    if root.is_file():
        files = [root]
    else:
        files = None
        for ext in ("parquet", "jsonl"):
            per_type = {t: root / f"test_{t.lower()}.{ext}" for t in ("2D", "3D")}
            present = {t: p for t, p in per_type.items() if p.is_file()}
            if present:
                files = [p for t, p in present.items() if want in (None, t)]
                if not files:
                    raise BenchmarkNotFoundError(
                        f"{root} holds {', '.join(p.name for p in present.values())} but not "
                        f"{per_type[want].name}, which the split {want!r} needs")
                break
            if (root / f"test.{ext}").is_file():
                files = [root / f"test.{ext}"]
                break
        if files is None:
            raise _not_found("cvbench", root)
    base = root.parent if root.is_file() else root
    needed = ["answer", ("choices", "prompt"), ("question", "prompt"), ("image", "filename")]
    for path in files:
        if path.suffix == ".parquet":
            rows = _parquet_rows(path, needed)
        elif path.suffix == ".jsonl":
            rows = _jsonl_rows(path)
        else:
            raise BenchmarkError(f"{path}: CV-Bench is read from .parquet or .jsonl files")
        for n, row in enumerate(rows):
            if n == 0 and path.suffix == ".jsonl":
                _require(path, list(row), needed)
            kind = _text(row.get("type"))
            kind = _CV_SPLITS.get(kind.lower(), kind) if kind else None
            if want is not None and kind is not None and kind != want:
                continue
            yield _cv_item(row, path, n, base, kind)


def _cv_item(row: dict, path: Path, n: int, base: Path, kind: str | None) -> BenchmarkItem:
    native = _native_id(row.get("idx"), f"{path.stem}-{n}")
    item_id = f"cv-bench/{native}"
    where = f"{item_id} ({path.name} row {n})"
    prompt = _text(row.get("prompt"))
    choices = row.get("choices")
    choices = choices.tolist() if hasattr(choices, "tolist") else choices
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError:
            choices = None
    if _blank(choices) or not choices:
        choices = _parse_paren_options(prompt or "")[1]
    choices = tuple(str(c).strip() for c in choices or ())
    question = _text(row.get("question"))
    if question is None and prompt:
        question = _parse_paren_options(prompt)[0]
    if not question:
        raise BenchmarkError(f"{where}: no question")
    letter = _letter(row.get("answer"))
    if letter is None or LETTERS.index(letter) >= len(choices):
        raise BenchmarkError(f"{where}: answer {row.get('answer')!r} is not the letter of one of "
                             f"the options {list(choices)}")
    boxes = _boxes(row.get("bbox"), where)
    image = _image_ref(row.get("image"), base, f"{path.name} row {n}")
    if image is None and _text(row.get("filename")):
        image = ImageRef("path", base / str(row["filename"]).strip(), f"{row['filename']}")
    meta = {k: _jsonable(v) for k, v in row.items()
            if k not in ("image", "question", "choices", "answer", "prompt", "bbox")}
    return BenchmarkItem(
        benchmark="cv-bench", id=item_id, question=question, choices=choices,
        answer=choices[LETTERS.index(letter)], answer_letter=letter,
        category=_text(row.get("task")), subcategory=_text(row.get("source")), split=kind,
        region=_union(boxes), boxes=boxes, native_prompt=prompt, meta=meta, image_ref=image)


def _parse_paren_options(text: str) -> tuple[str, list[str]]:
    """"Q? (A) x (B) y" or "(a) x (b) y" -> ("Q?", ["x", "y"]); letters must run a, b, c, ..."""
    marks = list(re.finditer(r"\(([A-Za-z])\)", text))
    # keep the run of marks that goes a, b, c, ... from the first "(a)"/"(A)"
    run, expect = [], 0
    for m in marks:
        if m.group(1).upper() == LETTERS[expect]:
            run.append(m)
            expect += 1
            if expect >= len(LETTERS):
                break
    if not run:
        return text.strip(), []
    head = text[: run[0].start()].strip()
    head = re.sub(r"\s*Select from the following choices\.?\s*$", "", head, flags=re.I)
    opts = [text[m.end(): (run[i + 1].start() if i + 1 < len(run) else len(text))].strip()
            for i, m in enumerate(run)]
    return head, [o.rstrip(",;").strip() for o in opts]


# ---------------------------------------------------------------------- MMVP
_MMVP_COLUMNS = ("Index", "Question", "Options", "Correct Answer")


def _load_mmvp(root: Path, split: str | None) -> Iterator[BenchmarkItem]:
    if split is not None and str(split).strip().lower() != "test":
        raise ValueError(f"MMVP has one split, 'test' (or None), not {split!r}")
    if root.is_file():
        files, base = [root], root.parent
    else:
        base = root
        csv_path = root / "Questions.csv"
        files = [csv_path] if csv_path.is_file() else \
            _find(root, ("*.parquet", "data/*.parquet", "*/*.parquet"))
        if not files:
            raise _not_found("mmvp", root)
    for path in files:
        if path.suffix == ".csv":
            rows = _table_rows(path, ",")
            images = base / "MMVP Images"
            if not images.is_dir():
                raise BenchmarkNotFoundError(f"{path} has no image folder next to it: expected "
                                             f"{images}/ holding 1.jpg ... 300.jpg")
        elif path.suffix == ".parquet":
            rows, images = _parquet_rows(path, _MMVP_COLUMNS), None
        else:
            raise BenchmarkError(f"{path}: MMVP is read from Questions.csv or parquet files")
        for n, row in enumerate(rows):
            if n == 0:
                _require(path, list(row), _MMVP_COLUMNS)
            yield _mmvp_item(row, path, n, images)


def _mmvp_item(row: dict, path: Path, n: int, images: Path | None) -> BenchmarkItem:
    raw = _text(row.get("Index"))
    try:
        index = int(float(raw))
    except (TypeError, ValueError):
        raise BenchmarkError(f"{path} row {n}: Index {row.get('Index')!r} is not a number") from None
    item_id = f"mmvp/{index}"
    question = _text(row.get("Question"))
    options = _text(row.get("Options")) or ""
    head, choices = _parse_paren_options(options)
    if not question or len(choices) < 2 or head:
        raise BenchmarkError(f"{item_id}: expected a question and options like '(a) Open (b) "
                             f"Closed', got {row.get('Question')!r} / {row.get('Options')!r}")
    given = _text(row.get("Correct Answer")) or ""
    letter = _letter(given) or _letter(given.split(")")[0] + ")" if given.startswith("(") else "")
    if letter is None:  # the answer written as text
        named = _named_option(given, choices)
        letter = LETTERS[named] if named is not None else None
    if letter is None or LETTERS.index(letter) >= len(choices):
        raise BenchmarkError(f"{item_id}: Correct Answer {given!r} names none of the options "
                             f"{choices}")
    if images is not None:
        image = ImageRef("path", images / f"{index}.jpg", f"MMVP Images/{index}.jpg")
    else:
        image = _image_ref(row.get("image"), path.parent, f"{path.name} row {n}")
    return BenchmarkItem(
        benchmark="mmvp", id=item_id, question=question, choices=tuple(choices),
        answer=choices[LETTERS.index(letter)], answer_letter=letter, split="test",
        pair=(index + 1) // 2, native_prompt=f"{question} {options}",
        meta={"index": index, "options": options, "correct_answer": given}, image_ref=image)


# -------------------------------------------------------------------- MMStar
def _load_mmstar(root: Path, split: str | None) -> Iterator[BenchmarkItem]:
    if split is not None and str(split).strip().lower() != "val":
        raise ValueError(f"MMStar has one split, 'val' (or None), not {split!r}")
    if root.is_file():
        files, base = [root], root.parent
    else:
        base = root
        files = _find(root, ("mmstar.parquet", "MMStar.parquet", "val/*.parquet", "val-*.parquet",
                             "data/val-*.parquet", "data/test-*.parquet", "data/*.parquet",
                             "MMStar.tsv", "mmstar.tsv"))
        if not files:
            raise _not_found("mmstar", root)
    needed = ["index", "question", "answer", "image"]
    for path in files:
        if path.suffix == ".parquet":
            rows = _parquet_rows(path, needed)
        elif path.suffix == ".tsv":
            rows = _table_rows(path, "\t")
        else:
            raise BenchmarkError(f"{path}: MMStar is read from parquet or .tsv files")
        for n, row in enumerate(rows):
            if n == 0 and path.suffix == ".tsv":
                _require(path, list(row), needed)
            yield _mmstar_item(row, path, n, base)


def _mmstar_item(row: dict, path: Path, n: int, base: Path) -> BenchmarkItem:
    item_id = f"mmstar/{_native_id(row.get('index'), f'{path.stem}-{n}')}"
    full = _text(row.get("question")) or ""
    question, choices = split_mmstar_question(full)
    if not choices:  # the TSV may carry the options in columns A, B, C, ...
        for letter in LETTERS:
            if _blank(row.get(letter)) or str(row.get(letter)).strip().lower() == "nan":
                break
            choices.append(str(row[letter]).strip())
    if not question or len(choices) < 2:
        raise BenchmarkError(f"{item_id}: expected a question with 'Options: A: ..., B: ...', "
                             f"got {full[:200]!r}")
    letter = _letter(row.get("answer"))
    if letter is None or LETTERS.index(letter) >= len(choices):
        raise BenchmarkError(f"{item_id}: answer {row.get('answer')!r} is not the letter of one of "
                             f"the options {choices}")
    l2 = row.get("l2_category", row.get("l2-category"))
    meta = {k: _jsonable(v) for k, v in row.items()
            if k not in ("image", "question", "answer") and k not in LETTERS}
    return BenchmarkItem(
        benchmark="mmstar", id=item_id, question=question, choices=tuple(choices),
        answer=choices[LETTERS.index(letter)], answer_letter=letter,
        category=_text(row.get("category")), subcategory=_text(l2), split="val",
        native_prompt=full, meta=meta,
        image_ref=_image_ref(row.get("image"), base, f"{path.name} row {n}"))


def split_mmstar_question(text: str) -> tuple[str, list[str]]:
    """Split an MMStar question into its stem and options.

    ``"Which ...?\\nOptions: A: on the book., B: beneath, the cat"`` gives
    ``("Which ...?", ["on the book.", "beneath, the cat"])``: options are found
    by their letters in order (A, B, C, ...), so commas inside them survive. A
    leading "Question:" label is dropped; no "Options:" (or "Choices:") marker:
    ``(text, [])``.
    """
    m = re.search(r"(?:^|\n|\s)(?:Options|Choices)\s*:\s*", text)
    if not m:
        return text.strip(), []
    stem = text[: m.start()].strip()
    stem = re.sub(r"(^|\n)\s*Question\s*:\s*", r"\1", stem).strip()
    body = text[m.end():]
    first = re.match(r"\s*\(?A\s*([:.)])\s*", body)
    if not first:
        return stem, []
    sep = re.escape(first.group(1))
    marks, pos = [first], first.end()
    for letter in LETTERS[1:]:
        found = re.compile(r"[\s,;]\s*\(?" + letter + r"\s*" + sep + r"\s*").search(body, pos)
        if not found:
            break
        marks.append(found)
        pos = found.end()
    opts = [body[mk.end(): (marks[i + 1].start() if i + 1 < len(marks) else len(body))]
            for i, mk in enumerate(marks)]
    opts = [o.strip().rstrip(",;").strip() for o in opts]
    while opts and (not opts[-1] or opts[-1].lower() == "nan"):
        opts.pop()
    return stem, opts
