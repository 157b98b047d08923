"""The findings: one module per reproduced result, each a plug-in of the same shape.

Each ``findings/<name>.py`` holds ``NAME``, ``Config`` (a frozen dataclass:
the single source of the finding's defaults; the command line makes its
flags from the fields), ``key(cfg, **extra)`` (what a stored part's key holds
between the model and the item id), optionally ``setup(vlm, store, cfg,
seed, items)`` (keyword arguments shared by every item, e.g. ablation's mean
vector) and ``part_extra(key, extra)``, ``run(vlm, item, cfg, **extra)`` (one
synthetic ``Scene`` or annotated ``ImageRecord`` -> tidy rows) and
``summarise(df)`` (the headline numbers). ``runner.run`` drives them.

>>> from vlmscope import findings
>>> findings.names()
['fractions', 'maps', 'knockout', 'compression', 'heatmaps', 'ablation', 'lens', 'lastpos', 'agreement']

What a notebook may claim (``answer_sense``, ``write_summary``, ...) lives in
``findings.sense`` and is re-exported here.
"""

from __future__ import annotations

from types import ModuleType

from . import ablation, agreement, compression, fractions, heatmaps, knockout, lastpos, lens, maps
from . import outliers  # noqa: F401  (notebook 02's outlier tokens; run as a module)
from ..judge import judge_for
from ._common import Conclusion
from .sense import (CHANCE, NO_OBJECT_WORDS, accuracy_found, accuracy_vs_chance, answer_sense,
                    description_sense, explainable_selection, finite, mentioned_objects,
                    naming_sense, nothing_to_report, write_summary)

FINDINGS: dict[str, ModuleType] = {m.NAME: m for m in (fractions, maps, knockout, compression,
                                                        heatmaps, ablation, lens, lastpos,
                                                        agreement)}

__all__ = ["CHANCE", "Conclusion", "FINDINGS", "NO_OBJECT_WORDS", "accuracy_found", "accuracy_vs_chance",
           "answer_sense", "description_sense",
           "explainable_selection", "finite", "get", "judge_for", "mentioned_objects", "names", "naming_sense",
           "nothing_to_report", "write_summary"]


def names() -> list[str]:
    """The findings' names, in the notebooks' order."""
    return list(FINDINGS)


def get(name) -> ModuleType:
    """The finding module called ``name`` (a module passes through)."""
    if isinstance(name, ModuleType):
        return name
    if name not in FINDINGS:
        raise ValueError(f"unknown finding {name!r}; known: {', '.join(FINDINGS)}")
    return FINDINGS[name]
