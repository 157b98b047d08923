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

The package: ``items`` (``BenchmarkItem``, ``ImageRef``, errors, grading),
``formats`` (file readers and field helpers shared by all three), one module
per benchmark (``cvbench``, ``mmvp``, ``mmstar``), and ``load_benchmark``
here. Every public name is importable from ``vlmscope.datasets.benchmarks``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .cvbench import _load_cvbench
from .formats import _EXPECTED
from .items import (BENCHMARKS, CHOICE_INSTRUCTION, LETTERS, PROMPT_STYLES, BenchmarkError,
                    BenchmarkImageError, BenchmarkItem, BenchmarkNotFoundError, Box, ImageRef,
                    correct)
from .mmstar import _load_mmstar, split_mmstar_question
from .mmvp import _load_mmvp

__all__ = ["BENCHMARKS", "PROMPT_STYLES", "CHOICE_INSTRUCTION", "LETTERS", "Box", "BenchmarkError",
           "BenchmarkNotFoundError", "BenchmarkImageError", "ImageRef", "BenchmarkItem", "correct",
           "load_benchmark", "split_mmstar_question"]


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
