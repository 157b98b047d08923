"""Reading the published file formats (parquet, jsonl, csv, tsv) and their fields (letters,
boxes, embedded or referenced images), shared by the three benchmarks; finding a copy's
files in a folder and saying what was expected when none is there."""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Iterator

from .items import LETTERS, Box, BenchmarkError, BenchmarkNotFoundError, ImageRef

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
