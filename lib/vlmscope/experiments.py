"""The batch runs' former entry points, kept while their users move to ``vlmscope.runner``.

Each finding lives in ``vlmscope.findings.<name>`` and the loop in
``vlmscope.runner``; these functions translate the old arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import pandas as pd

from .datasets.synthetic import _mix  # noqa: F401  (tests patch scenes by their seed)
from .findings import FINDINGS, get
from .findings.heatmaps import heatmap_row  # noqa: F401
from .runner import _part_files, _skippable, run  # noqa: F401
from .runner import run_benchmark_heatmaps as _benchmark

EXPERIMENTS = FINDINGS


@dataclass(frozen=True)
class RunConfig:
    question: str = "describe the image ."
    max_new_tokens: int = 48
    kinds: tuple = ("color", "where")  # heatmaps: question kinds with a target object


def _finding_config(name: str, cfg: RunConfig, heatmap=None):
    finding = get(name)
    have = {f.name for f in fields(finding.Config)}
    c = finding.Config(**{k: getattr(cfg, k) for k in ("question", "max_new_tokens", "kinds")
                          if k in have})
    if heatmap is not None and "heatmap" in have:
        c = replace(c, heatmap=heatmap)
    return c


def run_and_load(name: str, vlm, model_name: str, n: int, seed: int, out: str | Path,
                 cfg: RunConfig = RunConfig(), progress: bool = True,
                 heatmap=None) -> tuple[dict, pd.DataFrame]:
    """``runner.run`` with the old arguments; returns (summary, this run's rows)."""
    if name not in FINDINGS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(FINDINGS)}")
    res = run(name, vlm, n=n, seed=seed, out=out, config=_finding_config(name, cfg, heatmap),
              model_name=model_name, progress=progress)
    return res.summary, res.df


def run_experiment(name: str, vlm, model_name: str, n: int, seed: int, out: str | Path,
                   cfg: RunConfig = RunConfig(), progress: bool = True, heatmap=None) -> dict:
    return run_and_load(name, vlm, model_name, n, seed, out, cfg, progress, heatmap)[0]


def run_benchmark_heatmaps(*args, **kwargs) -> tuple[dict, pd.DataFrame]:
    res = _benchmark(*args, **kwargs)
    return res.summary, res.df


def summarise(name: str, df: pd.DataFrame) -> dict:
    return get(name).summarise(df) if name in FINDINGS else {}
