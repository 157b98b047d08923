"""What the finding modules share: the stored form of a configuration, item ids, field help.

A stored part's key holds the run configuration in the form the batch runs
have always written (``{"kinds", "max_new_tokens", "question"}``), so the
parts of stores written before the findings became modules are reused. Each
finding's ``key`` builds it with ``stored_config`` from the fields it has;
a field a finding does not have keeps the value those runs used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
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


def ours_vs_paper(paper: pd.DataFrame, ours: dict, notes: dict | None = None,
                  chance: dict | None = None) -> pd.DataFrame:
    """A tidy table: each paper quantity beside our figure (``ours``: quantity -> value or None).

    Columns quantity, ours, paper, paper_model, source, note. A quantity we did
    not measure has ``ours`` None and says so in ``note``. With ``chance``
    (quantity -> this run's chance level of a rate), a ``chance`` column
    follows ``ours``.
    """
    notes = notes or {}
    rows = []
    for r in paper.itertuples(index=False):
        value = ours.get(r.quantity)
        rows.append({"quantity": r.quantity, "ours": value, "paper": r.paper,
                     "paper_model": r.paper_model, "source": r.source,
                     "note": notes.get(r.quantity, "" if value is not None else "not measured in "
                                       "this run")})
    table = pd.DataFrame(rows, columns=["quantity", "ours", "paper", "paper_model", "source", "note"],
                         dtype=object)
    if chance is not None:
        table.insert(2, "chance", pd.Series([chance.get(q) for q in table.quantity], dtype=object))
    return table


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


# --- the closing "What we found" section of every notebook --------------------------------------
def rounded(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``table`` with every float cell rounded to ``digits`` (object columns too, where
    ``ours_vs_paper`` keeps numbers beside words), for display."""
    def cell(v):
        if isinstance(v, bool) or not isinstance(v, (float, np.floating)):
            return v
        return v if not np.isfinite(v) else round(float(v), digits)

    return pd.DataFrame({c: pd.Series([cell(v) for v in table[c]], index=table.index,
                                      dtype=object if table[c].dtype == object else None)
                         for c in table.columns})


def share(x: float | None, digits: int = 2) -> str:
    """A rate for prose: ``0.25`` -> ``"0.25"``; None or NaN -> ``"not measured"``."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "not measured"
    return f"{x:.{digits}f}"


@dataclass
class Conclusion:
    """A notebook's "What we found": this run beside the paper (``table``, a finding's
    ``vs_paper``-style comparison) and what it means for the model measured (``text``,
    markdown written from the same numbers by the finding's ``found``-style function).

    In a notebook it displays as the rounded table, then the text (IPython's
    ``Markdown``); ``str`` gives the text.
    """

    table: pd.DataFrame
    text: str

    def __str__(self) -> str:
        return self.text

    def _ipython_display_(self):
        from IPython.display import Markdown, display

        with pd.option_context("display.max_colwidth", None):
            display(rounded(self.table))
        display(Markdown(self.text))


def count(n, noun: str) -> str:
    """``count(1, "image")`` -> "1 image", ``count(6, "image")`` -> "6 images"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
