"""MMVP (MMVP/MMVP): Questions.csv + "MMVP Images/", or parquet with the same columns."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from .formats import (_find, _image_ref, _letter, _not_found, _parquet_rows, _parse_paren_options,
                      _require, _table_rows, _text)
from .items import (LETTERS, BenchmarkError, BenchmarkItem, BenchmarkNotFoundError, ImageRef,
                    _named_option)

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
