"""The gallery: ``figures/index.html``, every figure of a notebooks run beside its one-line finding.

``make figures`` (``notebooks.run_notebooks``) writes it last, so a reader sees
the suite's results before running anything. The one-line finding of a figure
is its notebook's, computed from the summary that notebook wrote
(``NN_summary.json``; notebook 00's ``00_accuracy.json``) by ``LINES[NN]``: the
numbers this run measured (with the chance level or the paper's value where the
summary or the finding's ``PAPER`` table has one) in one fixed sentence per
notebook; no finding is typed by hand. A notebook that had nothing to report
(its summary's ``nonsense``) says so. A figure whose notebook wrote no summary,
or whose summary lacks a number the line needs, is shown all the same, marked
"no finding line" with the reason.

>>> write_gallery("figures")                     # doctest: +SKIP
PosixPath('figures/index.html')
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from .findings import CHANCE


def _paper(finding: str, quantity: str):
    """The paper's value of ``quantity`` in the finding's ``PAPER`` table (None if absent)."""
    from . import findings

    table = findings.get(finding).PAPER
    rows = table[table.quantity == quantity]
    return rows.paper.iloc[0] if len(rows) else None


def _n(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _00(s):
    kinds = [k for k in ("color", "shape", "where", "exists", "count") if k in s]
    rates = ", ".join(f"{k} {s[k]:.2f} (chance {CHANCE[k]:.2f})" for k in kinds)
    return (f"{s['model']} answers correctly: {rates}; its descriptions name the objects with "
            f"F1 {s['describe_f1']:.2f} (n = {s['n']} per kind)")


def _01(s):
    return (f"generated tokens give the image {s['mean_image_attention']:.0%} of their attention "
            f"though it is {s['image_share_of_prompt_tokens']:.0%} of the prompt; most in layer "
            f"{s['peak_image_layer']}; BOS takes {s['mean_bos_attention']:.0%}")


def _02(s):
    best = s["best_pointing_layer"]
    return (f"an object word's attention peak lands on its object {s['pointing_by_layer'][best]:.0%} "
            f"of the time at best (layer {best} of {s['n_layers']}; chance "
            f"{s['pointing_chance']:.0%}); mass on the object peaks at "
            f"{s['ratio_by_layer'][s['best_ratio_layer']]:.1f}x chance in layer "
            f"{s['best_ratio_layer']}")


def _03(s):
    f1 = s["f1_l=-1"]
    names = {"img->gen": "image→generated", "img->txt": "image→question", "img->txt+gen": "both"}
    parts = []
    for cut, name in names.items():
        paper = _paper("knockout", f"f1[{cut},l=-1]")
        parts.append(f"{name} {f1[cut]:.2f}" + (f" (paper: {_n(paper)})" if paper is not None else ""))
    return f"object F1 with the image cut in every layer: {'; '.join(parts)}"


def _04(s):
    from .compression import PAPER

    row = next(r for r in s["exists"] if r["variant"] == "both" and r["k_frac"] == s["k_main"])
    return (f"keeping {s['k_main']:.0%} of the image tokens (and the question's) in the cache "
            f"keeps {row['relative']:.0%} of the yes/no accuracy at {row['compression']:.1f}x fewer "
            f"tokens (paper, {PAPER['model']}: {PAPER['relative_performance']:.0%} at "
            f"{PAPER['token_reduction']:.0f}x)")


def _05(s):
    mass, point = s["mass"], s["pointing"]
    maps = [m for m in ("iGOS+", "attention", "gradient", "random") if m in mass]
    return (f"over {s['n_scored']} questions, share of the map on the asked object: "
            + ", ".join(f"{m} {mass[m]:.2f}" for m in maps)
            + "; its peak on the object: " + ", ".join(f"{m} {point[m]:.2f}" for m in maps))


def _06(s):
    t = s["design_vs_scale"]["Spearman"]
    return (f"over {t['n_questions']} questions, maps of models that share a design agree more than "
            f"maps of models that share a scale by {t['observed']:+.3f} Spearman (p = "
            f"{t['p_value']:.3f}; {t['confidence']:.0%} CI {t['ci_low']:+.3f} to {t['ci_high']:+.3f})")


def _07(s):
    lost = s["lost"]
    return ("removing an object's tokens (one ring of buffer) loses it from "
            f"{lost['object,1,generative']:.0%} of descriptions and {lost['object,1,vqa']:.0%} of "
            f"answers; as many high-norm tokens: {lost['high-norm,1,generative']:.0%} and "
            f"{lost['high-norm,1,vqa']:.0%}; random tokens: {lost['random,1,generative']:.0%} and "
            f"{lost['random,1,vqa']:.0%}")


def _08(s):
    top = max(s["reads_as"].items(), key=lambda kv: kv[1])[0] if s.get("reads_as") else "none"
    return (f"an object's patches read as its own colour or shape word {s['best_share']:.1%} of the "
            f"time at best (layer {s['best_layer']}); the commonest top word on them is {top!r}")


def _09(s):
    r = s["relative_accuracy"]
    return ("blocking the last position from the object's tokens in every layer leaves "
            f"{r['object,all']:.0%} of the accuracy (blocking another image region instead: "
            f"{r['other image,all']:.0%})")


def _10a(s):
    restored = s["restored_by_site"]
    best = max(restored, key=restored.get)
    return (f"patching the clean object tokens into the corrupt run restores {restored[best]:.0%} "
            f"of the answer at {best}; attribution puts {s['attribution_share_on_object']:.0%} "
            "on the object")


def _11(s):
    routing = ", ".join(s["query_routing"]) or "none"
    return (f"of {len(s['models'])} organism variants, query routing: {routing}; best lens share "
            f"{s['best_lens_share']:.3f} ({s['best_lens_model']}) against the paper's "
            f"{s['paper_lens_share']}")


LINES = {"00": _00, "01": _01, "02": _02, "03": _03, "04": _04, "05": _05, "06": _06, "07": _07,
         "08": _08, "09": _09, "10a": _10a, "11": _11}


def _prefix(name: str) -> str:
    return name.split("_", 1)[0]


def summary_path(folder, prefix: str) -> Path | None:
    """The summary notebook ``prefix`` wrote in ``folder`` (None when there is none)."""
    folder = Path(folder)
    for name in (f"{prefix}_summary.json", f"{prefix}_accuracy.json"):
        if (folder / name).is_file():
            return folder / name
    return None


def finding_line(folder, prefix: str) -> tuple[str | None, str]:
    """(the one-line finding, "") for notebook ``prefix``; (None, the reason) when there is none."""
    path = summary_path(folder, prefix)
    if path is None:
        return None, f"no {prefix}_summary.json: run notebook {prefix} to write it"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{path.name} is not readable JSON ({e})"
    if summary.get("nonsense"):
        return f"nothing to report: {summary['nonsense']}", ""
    if prefix not in LINES:
        return None, f"no finding line is defined for notebook {prefix}"
    try:
        return LINES[prefix](summary), ""
    except (KeyError, TypeError, ValueError, IndexError, StopIteration, AttributeError) as e:
        return None, f"{path.name} lacks what the line needs ({type(e).__name__}: {e})"


def _title(folder: Path, prefix: str) -> str:
    """The notebook's first heading, from its executed copy (else the prefix)."""
    for nb in sorted((folder / "executed").glob(f"{prefix}_*.ipynb")):
        try:
            cells = json.loads(nb.read_text()).get("cells", [])
        except (OSError, ValueError):
            break
        for cell in cells:
            if cell.get("cell_type") == "markdown":
                text = "".join(cell.get("source", ""))
                m = re.search(r"^#\s+(.+)$", text, re.M)
                if m:
                    return m.group(1).strip()
    return f"notebook {prefix}"


def write_gallery(folder="figures", name: str = "index.html") -> Path:
    """Write ``folder/name``: every PNG in ``folder``, grouped by notebook, with its finding line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no figures folder at {folder}: run `make figures` first")
    groups: dict[str, list[Path]] = {}
    for png in sorted(folder.glob("*.png")):
        groups.setdefault(_prefix(png.name), []).append(png)
    e = html.escape
    parts = ["<!doctype html>", "<meta charset='utf-8'>", "<title>vlmscope: the figures</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "figure{display:inline-block;vertical-align:top;margin:0 1em 1.5em 0;max-width:520px}"
             "img{max-width:100%;border:1px solid #ddd}figcaption{font-size:90%}"
             ".missing{color:#a00}</style>",
             "<h1>vlmscope: the figures</h1>",
             f"<p>{sum(map(len, groups.values()))} figures from {len(groups)} notebooks, each with "
             "its notebook's one-line finding, computed from the summary the notebook wrote. "
             "Rebuild with <code>make figures</code>.</p>"]
    if not groups:
        parts.append("<p class='missing'>no figures here yet: run <code>make figures</code>.</p>")
    for prefix, pngs in groups.items():
        line, why = finding_line(folder, prefix)
        caption = (f"<b>Finding:</b> {e(line)}" if line is not None else
                   f"<span class='missing'><b>no finding line:</b> {e(why)}</span>")
        executed = sorted((folder / "executed").glob(f"{prefix}_*.ipynb"))
        link = (f" <small>(<a href='executed/{e(executed[0].name)}'>executed notebook</a>)</small>"
                if executed else "")
        parts += [f"<section id='nb-{e(prefix)}'>", f"<h2>{e(_title(folder, prefix))}{link}</h2>"]
        for png in pngs:
            parts.append(f"<figure><a href='{e(png.name)}'><img src='{e(png.name)}' alt='{e(png.stem)}'"
                         f" loading='lazy'></a><figcaption><code>{e(png.name)}</code><br>{caption}"
                         "</figcaption></figure>")
        parts.append("</section>")
    out = folder / name
    out.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return out
