"""Pinned outputs: every ``run`` experiment on the bundled organism gives the numbers it gave.

Each experiment runs on one or two fixed scenes with small settings; its
summary and its rows (timing columns, store keys and file names aside) are
compared with the JSON in ``tests/pinned/``, floats within ``REL``/``ABS``
(NaN equals NaN, a missing value equals a missing value). A pinned key or
column that disappears fails; a new one is allowed and reported as a warning.

The pins change only deliberately: ``VLMSCOPE_REPIN=1 pytest tests/test_pinned.py``
(and ``tests/test_notebooks.py`` for the notebook summaries) writes them
afresh; a normal run never writes, and a missing pin file fails.
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

PINNED = Path(__file__).resolve().parent / "pinned"
# float tolerance (relative, absolute): repeated runs on one thread agree exactly; on two threads
# (CI's default) the heatmap rows moved by up to 4e-7 relative (iGOS's summed gradients), and
# notebook 06's Spearman correlation between mean heatmaps by 1.5e-5 relative (pins made on one
# thread); a refactoring slip moves numbers far more than 1e-4
REL, ABS = 1e-4, 1e-6
REPIN = os.environ.get("VLMSCOPE_REPIN") == "1"

# never compared: wall-clock times, and what names a place (paths, store keys, mask files)
SKIP_KEYS = {"seconds", "store", "_key", "mask_file"}


def _run(name: str, vlm, n: int, seed: int, out, **cfg) -> tuple[dict, pd.DataFrame]:
    """THE one place that knows how a run is started: ``(summary, rows)`` of ``name``.

    ``cfg``: flat settings (``max_new_tokens``, and the heatmap's ``iterations``,
    ``ig_iter``, ``size``), sorted into the finding's ``Config`` here.
    """
    import dataclasses

    from vlmscope import findings, runner

    config_cls = findings.get(name).Config
    fields = {f.name for f in dataclasses.fields(config_cls)}
    if "heatmap" in fields:  # heatmap knobs held in a nested HeatmapConfig
        from vlmscope.heatmaps import HeatmapConfig

        hm = {k: cfg.pop(k) for k in list(cfg) if k not in fields}
        cfg["heatmap"] = HeatmapConfig(**hm)
    res = runner.run(name, vlm, n=n, seed=seed, out=out, config=config_cls(**cfg),
                     model_name="organism", progress=False)
    return res.summary, res.df


# ------------------------------------------------------------------ comparison
def _plain(v):
    """A JSON-able plain Python value (numpy scalars and arrays unwrapped)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, str):  # an object's address in an error message changes every run
        return re.sub(r" at 0x[0-9a-fA-F]+", " at 0x...", v)
    return v


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def rows_for_pin(df: pd.DataFrame) -> dict:
    """A frame's rows as ``{column: [values]}``, in scene order (``item``), then the scene's own.

    The store returns parts in key order; keys may change (they hold the
    configuration), so rows are ordered by scene index, stably.
    """
    if "item" in df:
        df = df.sort_values("item", kind="stable")
    return {c: _plain(df[c].tolist()) for c in df.columns if c not in SKIP_KEYS}


def differences(expected, actual, where: str = "", new: list | None = None) -> list[str]:
    """Where ``actual`` departs from ``expected``; keys new in ``actual`` go to ``new``."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a mapping, got {type(actual).__name__}"]
        out = []
        for k, v in expected.items():
            if k in SKIP_KEYS:
                continue
            if k not in actual:
                out.append(f"{where}/{k}: disappeared")
            else:
                out += differences(v, actual[k], f"{where}/{k}", new)
        if new is not None:
            new += [f"{where}/{k}" for k in actual if k not in expected and k not in SKIP_KEYS]
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            got = len(actual) if isinstance(actual, list) else type(actual).__name__
            return [f"{where}: expected a list of {len(expected)}, got {got}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += differences(e, a, f"{where}[{i}]", new)
        return out
    if _missing(expected) or _missing(actual):
        return [] if _missing(expected) and _missing(actual) else \
            [f"{where}: expected {expected!r}, got {actual!r}"]
    if _number(expected) and _number(actual):
        if math.isinf(expected) or math.isinf(actual):
            ok = expected == actual
        else:
            ok = math.isclose(expected, actual, rel_tol=REL, abs_tol=ABS)
        return [] if ok else [f"{where}: expected {expected!r}, got {actual!r}"]
    return [] if expected == actual and type(expected) is type(actual) else \
        [f"{where}: expected {expected!r}, got {actual!r}"]


def _without_skipped(v):
    if isinstance(v, dict):
        return {k: _without_skipped(x) for k, x in v.items() if k not in SKIP_KEYS}
    return v


def check_pin(name: str, actual: dict) -> None:
    """Compare ``actual`` with ``tests/pinned/<name>.json`` (or write it under ``VLMSCOPE_REPIN=1``)."""
    path = PINNED / f"{name}.json"
    actual = json.loads(json.dumps(_plain(actual)))  # exactly what a pin file would hold
    if REPIN:
        actual = _without_skipped(actual)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
        return
    if not path.exists():
        pytest.fail(f"no pinned output {path.name}; write it deliberately with "
                    "VLMSCOPE_REPIN=1 (see tests/test_pinned.py)")
    new: list[str] = []
    diffs = differences(json.loads(path.read_text()), actual, name, new)
    if new:
        warnings.warn(f"{name}: new, unpinned keys or columns: {', '.join(new)}")
    assert not diffs, f"{len(diffs)} pinned value(s) changed:\n" + "\n".join(diffs[:40])


# ------------------------------------------------------------------ the runs
RUNS = {  # experiment: (n scenes, settings); seed 0
    "fractions": (2, {"max_new_tokens": 8}),
    "maps": (2, {"max_new_tokens": 16}),
    "knockout": (1, {"max_new_tokens": 12}),
    "compression": (1, {"max_new_tokens": 12}),
    "heatmaps": (1, {"max_new_tokens": 8, "iterations": 2, "ig_iter": 3, "size": 8}),
    "ablation": (1, {"max_new_tokens": 8}),
    "lens": (2, {}),
    "lastpos": (1, {}),
}


@pytest.fixture(scope="module")
def organism():
    import vlmscope

    return vlmscope.load("organism")


SLOW = {"ablation"}  # its mean vector alone takes 32 reference images


@pytest.mark.parametrize("name", [pytest.param(k, marks=pytest.mark.slow) if k in SLOW else k
                                  for k in sorted(RUNS)])
def test_run_outputs_are_pinned(organism, tmp_path, name):
    n, cfg = RUNS[name]
    summary, df = _run(name, organism, n, 0, tmp_path, **dict(cfg))
    assert summary["experiment"] == name and summary["n"] == n
    assert len(df) > 0, f"{name}: no rows to pin"
    check_pin(f"run-{name}", {"summary": summary, "rows": rows_for_pin(df)})


# ------------------------------------------------------------------ the command line
def _cli_run(argv, out, capsys) -> tuple[dict, pd.DataFrame]:
    """``python -m vlmscope run ...`` in process: its one-line summary and the stored rows."""
    from vlmscope.cli import main
    from vlmscope.runs import RunStore

    capsys.readouterr()
    assert main(["run", *argv, "--model", "organism", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return summary, RunStore(Path(summary["store"])).load()


def test_cli_run_with_its_defaults_is_pinned(tmp_path, capsys):
    """The command line's own defaults (seed, question, 48 new tokens) reach the run unchanged."""
    summary, df = _cli_run(["fractions", "--n", "1"], tmp_path, capsys)
    assert summary["seed"] == 0 and len(df) > 0
    check_pin("cli-fractions", {"summary": summary, "rows": rows_for_pin(df)})


def test_cli_heatmaps_with_its_igos_defaults_is_pinned(tmp_path, capsys):
    """iGOS flags left to their defaults (method, mask size, baseline, batch) give the pinned maps."""
    summary, df = _cli_run(["heatmaps", "--n", "1", "--max-new-tokens", "8", "--iterations", "1",
                            "--ig-iter", "2"], tmp_path, capsys)
    assert summary["questions"] > 0
    check_pin("cli-heatmaps", {"summary": summary, "rows": rows_for_pin(df)})


def test_cli_benchmark_heatmaps_are_pinned(tmp_path, capsys):
    """``run heatmaps --benchmark cv-bench --data PATH`` on a three-item local copy (one damaged)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image
    from test_benchmark_datasets import CV_SCHEMA, cv_rows

    root = tmp_path / "CV-Bench"
    root.mkdir()
    rows = cv_rows()
    rows[0]["image"] = {"bytes": b"not an image", "path": None}
    for r, (w, h) in zip(rows[1:], [(50, 40), (60, 45)]):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(w).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            buf, format="PNG")
        r["image"] = {"bytes": buf.getvalue(), "path": None}
    pq.write_table(pa.Table.from_pylist(rows, schema=CV_SCHEMA), root / "test_2d.parquet")
    summary, df = _cli_run(["heatmaps", "--benchmark", "cv-bench", "--data", str(root),
                            "--max-new-tokens", "4", "--iterations", "1", "--ig-iter", "2",
                            "--size", "8"], tmp_path / "out", capsys)
    assert summary["n"] == 3 and len(df) == 3
    check_pin("cli-benchmark-heatmaps", {"summary": summary,
                                         "rows": rows_for_pin(df.sort_values("id"))})


def test_a_changed_number_or_a_lost_key_is_caught():
    """The comparison itself: tolerance, NaN, missing keys, new keys, list lengths."""
    pinned = {"a": 0.5, "b": [1, 2.0, float("nan")], "c": {"d": "x"}, "store": "/tmp/x"}
    same = {"a": 0.5 * (1 + 1e-7), "b": [1, 2.0, float("nan")], "c": {"d": "x"}, "store": "/y"}
    assert differences(pinned, same) == []
    new: list[str] = []
    assert differences(pinned, {**same, "e": 1}, new=new) == [] and new == ["/e"]
    assert differences(pinned, {**same, "a": 0.5001}) == ["/a: expected 0.5, got 0.5001"]
    assert differences(pinned, {**same, "b": [1, 2.0, 0.0]}) == ["/b[2]: expected nan, got 0.0"]
    assert differences(pinned, {**same, "b": [1, 2.0]})[0].startswith("/b: expected a list of 3")
    assert differences(pinned, {k: v for k, v in same.items() if k != "c"}) == ["/c: disappeared"]
    assert differences(pinned, {**same, "c": {"d": "y"}}) == ["/c/d: expected 'x', got 'y'"]
    assert differences({"t": True}, {"t": 1}) == ["/t: expected True, got 1"]
