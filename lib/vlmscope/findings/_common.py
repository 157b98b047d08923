"""What the finding modules share: the stored form of a configuration, item ids, field help.

A stored part's key holds the run configuration in the form the batch runs
have always written (``{"kinds", "max_new_tokens", "question"}``), so the
parts of stores written before the findings became modules are reused. Each
finding's ``key`` builds it with ``stored_config`` from the fields it has;
a field a finding does not have keeps the value those runs used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..datasets.synthetic import DESCRIBE


def stored_config(question: str = DESCRIBE, max_new_tokens: int = 48,
                  kinds: tuple = ("color", "where")) -> dict:
    """The run configuration as stored in a part's key (the batch runs' original layout)."""
    return {"question": question, "max_new_tokens": max_new_tokens, "kinds": tuple(kinds)}


def option(default, help: str, minimum: int | None = None, choices=None, **kw):
    """A ``Config`` field with the command line's help (and bounds) in its metadata."""
    meta = {"help": help}
    if minimum is not None:
        meta["min"] = minimum
    if choices is not None:
        meta["choices"] = tuple(choices)
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


def is_scene(item) -> bool:
    """A synthetic scene (``datasets.synthetic.Scene``), as against an annotated image."""
    return hasattr(item, "object_by")


def item_id(item):
    """The item's id in a part's key: a scene's seed, an annotated image's file name."""
    if is_scene(item):
        return item.seed
    return str(item.file)


def not_for_images(finding: str, needs: str):
    """The error a finding raises for an annotated image it cannot analyse."""
    raise ValueError(f"the {finding} finding needs {needs}; an annotated image (an image folder "
                     "or a COCO copy) does not give that: run it on the synthetic scenes "
                     "(no --images)")


def ours_vs_paper(paper: pd.DataFrame, ours: dict, notes: dict | None = None) -> pd.DataFrame:
    """A tidy table: each paper quantity beside our figure (``ours``: quantity -> value or None).

    Columns quantity, ours, paper, paper_model, source, note. A quantity we did
    not measure has ``ours`` None and says so in ``note``.
    """
    notes = notes or {}
    rows = []
    for r in paper.itertuples(index=False):
        value = ours.get(r.quantity)
        rows.append({"quantity": r.quantity, "ours": value, "paper": r.paper,
                     "paper_model": r.paper_model, "source": r.source,
                     "note": notes.get(r.quantity, "" if value is not None else "not measured in "
                                       "this run")})
    return pd.DataFrame(rows, columns=["quantity", "ours", "paper", "paper_model", "source", "note"],
                        dtype=object)


def paper_table(rows) -> pd.DataFrame:
    """``PAPER`` from ``(quantity, paper, paper_model, source)`` tuples."""
    return pd.DataFrame(list(rows), columns=["quantity", "paper", "paper_model", "source"], dtype=object)


@dataclass(frozen=True)
class DescribeConfig:
    """The settings of a finding that describes each image once (fractions, maps, outliers)."""

    question: str = option(DESCRIBE, "the prompt whose answer is generated")
    max_new_tokens: int = option(48, "answer length in tokens", minimum=1)


def describe_key(cfg: DescribeConfig, **extra) -> list:
    """What a stored part's key holds between the model and the item id."""
    return [stored_config(cfg.question, cfg.max_new_tokens)]
