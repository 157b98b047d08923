"""CV-Bench (nyu-visionx/CV-Bench): parquet or jsonl + img/, 2D and 3D splits, region boxes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from .formats import (_blank, _boxes, _image_ref, _jsonable, _jsonl_rows, _letter, _native_id,
                      _not_found, _parquet_rows, _parse_paren_options, _require, _text, _union)
from .items import LETTERS, BenchmarkError, BenchmarkNotFoundError, ImageRef, BenchmarkItem

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
