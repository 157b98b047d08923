"""MMStar (Lin-Chen/MMStar): parquet or tsv with base64 images; options inside the question."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from .formats import (_blank, _find, _image_ref, _jsonable, _letter, _native_id, _not_found,
                      _parquet_rows, _require, _table_rows, _text)
from .items import LETTERS, BenchmarkError, BenchmarkItem

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
