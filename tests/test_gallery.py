"""The gallery (``figures/index.html``): every figure with its notebook's computed one-line finding."""

import json
import re
from pathlib import Path

import pytest

from vlmscope.gallery import LINES, finding_line, write_gallery

PINNED = Path(__file__).parent / "pinned"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
       b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84"
       b"\x00\x00\x00\x00IEND\xaeB`\x82")


def _summary(folder: Path, name: str, **values) -> None:
    (folder / name).write_text(json.dumps({"nonsense": None, **values}))


@pytest.fixture
def fake(tmp_path):
    """A figures folder: 01 and 08 with summaries, 02 without one, 09 with nothing to report."""
    for name in ("01_fractions.png", "02_maps.png", "08_lens_layers.png", "08_lens_score.png",
                 "09_windows.png"):
        (tmp_path / name).write_bytes(PNG)
    _summary(tmp_path, "01_summary.json", mean_image_attention=0.4321,
             image_share_of_prompt_tokens=0.875, peak_image_layer=2, mean_bos_attention=0.0123)
    _summary(tmp_path, "08_summary.json", best_share=0.0625, best_layer=3,
             reads_as={"<b>&bold</b>": 7, "right": 2})
    (tmp_path / "09_summary.json").write_text(json.dumps({"nonsense": "no answer is right"}))
    (tmp_path / "executed").mkdir()
    (tmp_path / "executed" / "01_attention_fractions.ipynb").write_text(json.dumps(
        {"cells": [{"cell_type": "markdown", "source": ["# 01 · Attention <fractions>\n", "text"]}]}))
    return tmp_path


def test_gallery_shows_every_png_with_its_computed_finding(fake):
    page = write_gallery(fake).read_text()
    figures = re.findall(r"<figure>.*?</figure>", page, re.S)
    assert len(figures) == 5
    for name in ("01_fractions.png", "02_maps.png", "08_lens_layers.png", "08_lens_score.png",
                 "09_windows.png"):
        [fig] = [f for f in figures if f"src='{name}'" in f]
        assert f"<code>{name}</code>" in fig
    [f01] = [f for f in figures if "01_fractions" in f]
    assert "43% of their attention though it is 88% of the prompt" in f01  # this summary's numbers
    assert "most in layer 2; BOS takes 1%" in f01
    for f in figures:
        if "08_lens" in f:
            assert "6.2% of the time at best (layer 3)" in f
    assert "nothing to report: no answer is right" in [f for f in figures if "09_" in f][0]
    assert "01 · Attention &lt;fractions&gt;" in page  # the executed notebook's title, escaped
    assert "href='executed/01_attention_fractions.ipynb'" in page


def test_gallery_escapes_html_and_marks_a_missing_finding(fake):
    page = write_gallery(fake).read_text()
    assert "<b>&bold</b>" not in page  # a word the model produced cannot inject markup
    assert "&#x27;&lt;b&gt;&amp;bold&lt;/b&gt;&#x27;" in page
    [f02] = re.findall(r"<figure><a href='02_maps.png'.*?</figure>", page, re.S)
    assert "no finding line" in f02 and "no 02_summary.json: run notebook 02" in f02
    (fake / "08_summary.json").write_text(json.dumps({"nonsense": None, "best_layer": 1}))
    page = write_gallery(fake).read_text()  # a summary without the number the line needs
    assert page.count("08_summary.json lacks what the line needs (KeyError") == 2
    (fake / "01_summary.json").write_text("{not json")
    assert finding_line(fake, "01")[0] is None and "not readable JSON" in finding_line(fake, "01")[1]
    assert "no finding line" in write_gallery(fake).read_text()


def test_gallery_of_an_empty_or_missing_folder(tmp_path):
    assert "no figures here yet" in write_gallery(tmp_path).read_text()
    with pytest.raises(FileNotFoundError, match="run `make figures` first"):
        write_gallery(tmp_path / "nope")


@pytest.mark.parametrize("prefix", sorted(LINES))
def test_every_notebook_summary_gives_its_line(prefix, tmp_path):
    """Each line reads the summary that notebook really writes (its pinned quick-run summary)."""
    pinned = json.loads((PINNED / f"notebook-{prefix}.json").read_text())
    name = "00_accuracy.json" if prefix == "00" else f"{prefix}_summary.json"
    (tmp_path / name).write_text(json.dumps(pinned))
    line, why = finding_line(tmp_path, prefix)
    assert line is not None, why
    numbers = re.findall(r"\d+\.\d+|\d+%", line)
    assert numbers, line  # the line carries this run's measurements
    moved = json.loads(json.dumps(pinned).replace('"nonsense": null', '"nonsense": "bad answers"'))
    (tmp_path / name).write_text(json.dumps(moved))
    assert finding_line(tmp_path, prefix) == ("nothing to report: bad answers", "")


def test_notebook_03_line_sets_this_run_beside_the_paper(tmp_path):
    from vlmscope.findings import knockout

    (tmp_path / "03_summary.json").write_text(json.dumps(
        {"nonsense": None, "f1_l=-1": {"img->gen": 0.125, "img->txt": 0.75, "img->txt+gen": 0.5}}))
    line, _ = finding_line(tmp_path, "03")
    paper = knockout.PAPER.set_index("quantity").paper
    assert f"image→generated 0.12 (paper: {paper['f1[img->gen,l=-1]']:.2f})" in line
    assert f"image→question 0.75 (paper: {paper['f1[img->txt,l=-1]']})" in line
