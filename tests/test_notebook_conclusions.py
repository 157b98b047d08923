"""Every numbered notebook ends with "What we found": the finding's own comparison beside the
paper's, and sentences written from the run's numbers by the finding module (tested here:
each changes when the numbers do)."""
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from vlmscope import findings
from vlmscope.findings import (Conclusion, ablation, compression, fractions, heatmaps, knockout,
                               lastpos, lens, maps)
from vlmscope.findings._common import count, rounded

NB = Path(__file__).resolve().parents[1] / "notebooks"
# notebook -> (the comparison it must show, the sentence writer it must call)
CLOSING = {"00": ("accuracy_vs_chance(", "accuracy_found("),
           "01": ("finding.vs_paper(", "finding.what_we_found("),
           "02": ("finding.vs_paper(", "finding.what_we_found("),
           "03": ("finding.vs_paper(", "finding.what_we_found("),
           "04": ("finding.vs_paper(", "finding.what_we_found("),
           "05": ("finding.example_vs_paper(", "finding.what_we_found("),
           "06": ("finding.zoo_vs_paper(", "finding.zoo_found("),
           "07": ("finding.vs_paper(", "finding.what_we_found("),
           "08": ("finding.vs_paper(", "finding.what_we_found("),
           "09": ("finding.vs_paper(", "finding.what_we_found("),
           "11": ("M.vs_paper(", "M.what_we_found(")}


@pytest.mark.parametrize("prefix", sorted(CLOSING))
def test_every_notebook_ends_with_what_we_found_from_its_findings_functions(prefix):
    [path] = NB.glob(f"{prefix}_*.py")
    text = path.read_text()
    headings = re.findall(r"^# ## (.+)$", text, flags=re.M)
    assert headings[-1] == "What we found", f"{path.name} ends with section {headings[-1]!r}"
    closing = text[text.rindex("# ## What we found"):]
    code = "\n".join(c for c in closing.split("# %%")[1:] if not c.startswith(" [markdown]"))
    compare, words = CLOSING[prefix]
    assert "Conclusion(" in code and compare in code and words in code, path.name
    prose = "\n".join(c for c in closing.split("# %%")[1:] if c.startswith(" [markdown]"))
    assert "organism" in prose, f"{path.name}: the closing prose names no model"


# ------------------------------------------------------------ the display
def test_conclusion_shows_a_rounded_table_then_the_text(monkeypatch):
    import IPython.display as d

    shown = []
    monkeypatch.setattr(d, "display", lambda *objs: shown.extend(objs))
    table = pd.DataFrame({"quantity": ["a", "b", "c"], "ours": [0.123456789, "words", -1],
                          "paper": [0.4, None, 2]}, dtype=object)
    c = Conclusion(table, "**m**: it agrees.")
    c._ipython_display_()
    assert shown[0].ours.tolist() == [0.123, "words", -1] and shown[1].data == "**m**: it agrees."
    assert repr(shown[0].ours.iloc[2]) == "-1"  # a layer index stays an integer
    assert str(c) == "**m**: it agrees."
    assert rounded(pd.DataFrame({"x": [np.float64(2 / 3), np.nan, True, 3]})).x.tolist()[0] == 0.667
    assert count(1, "image") == "1 image" and count(6, "image") == "6 images"


# ------------------------------------------------------------ 00
def test_accuracy_vs_chance_puts_the_chance_level_beside_each_kind():
    scores = {"n": 10, "color": 1.0, "shape": 0.9, "where": 0.1, "exists": 1.0, "count": 1.0,
              "describe_f1": 0.97, "describe_exact": 0.5, "seed": 1}
    t = findings.accuracy_vs_chance(scores).set_index("question kind")
    assert list(t.index) == ["color", "shape", "where", "exists", "count", "describe_f1"]
    assert t.loc["where", "chance"] == round(1 / 9, 3) and pd.isna(t.loc["describe_f1", "chance"])
    assert t["reaches the bar"].tolist() == [True, False, False, True, True, True]
    text = findings.accuracy_found(scores, "organism")
    assert "shape, where are below the bar" in text and "where is answered no better" in text
    good = findings.accuracy_found({**scores, "shape": 1.0, "where": 1.0}, "organism")
    assert "every question kind" in good and "better than chance" in good


# ------------------------------------------------------------ 01 and 02
def test_fractions_what_we_found_compares_the_image_share_with_its_share_of_the_prompt():
    s = {"mean_image_attention": 0.3, "image_share_of_prompt_tokens": 0.8,
         "peak_image_layer": 1, "object_words": 5}
    below = fractions.what_we_found(s, "m", 4)
    assert "30%" in below and "80%" in below and "below the image's share" in below
    assert "layer 1 of 4 (the middle layers)" in below and "so is this one" in below
    above = fractions.what_we_found({**s, "mean_image_attention": 0.9, "peak_image_layer": 0}, "m", 4)
    assert "above the image's share" in above and "this one is not" in above


def test_maps_what_we_found_names_the_best_band_and_the_outlier_sign():
    s = {"n_images": 2, "pointing_by_band": {"early": 0.2, "middle": 0.7, "late": 0.1},
         "pointing_chance": 0.14, "modal_peak_rate_by_band": {"early": 0.5, "middle": 0.1,
                                                             "late": 0.4}}
    text = maps.what_we_found(s, "m")
    assert "**middle** layers" in text and "this model agrees" in text and "0.14" in text
    assert "as the paper finds" in text
    other = maps.what_we_found({**s, "pointing_by_band": {"early": 0.6, "middle": 0.2, "late": 0.6},
                                "modal_peak_rate_by_band": {"early": 0.1, "middle": 0.5,
                                                            "late": 0.1}}, "m")
    assert "**early and late** layers" in other and "does not" in other and "unlike" in other
    assert "no description names" in maps.what_we_found({"n_images": 2}, "m")


# ------------------------------------------------------------ 03
def test_knockout_what_we_found_says_when_the_result_is_the_papers_opposite():
    s = {"n_images": 6, "n_layers": 4, "f1_l=-1": {"img->gen": 0.0, "img->txt": 1.0,
                                                   "img->txt+gen": 0.0}}
    text = knockout.what_we_found(s, "organism")
    assert "img->txt keeps F1 1.00" in text and "img->gen keeps 0.00" in text
    assert "**opposite**" in text and "directly from the generated positions" in text
    like = knockout.what_we_found({**s, "f1_l=-1": {"img->gen": 0.4, "img->txt": 0.05}}, "m")
    assert "**agrees**" in like and "opposite" not in like
    probes = {**s, "probe_query_best": 0.9, "probe_image_best": 1.0, "probe_shuffled_best": 0.5,
              "generated_attention_on_query": 0.1, "generated_attention_on_image": 0.8}
    assert "well above shuffled labels" in knockout.what_we_found(probes, "m")
    assert "no better than" in knockout.what_we_found({**probes, "probe_query_best": 0.55}, "m")
    assert "nothing to set beside" in knockout.what_we_found({"n_images": 1}, "m")


# ------------------------------------------------------------ 04
def _compression_summary(rel_both, acc_query):
    rows = [{"variant": "both", "k_frac": 0.05, "acc": rel_both, "relative": rel_both,
             "compression": 5.6, "n_questions": 40},
            {"variant": "query", "k_frac": 0.05, "acc": acc_query, "relative": acc_query,
             "compression": 8.1, "n_questions": 40}]
    return {"model": "organism", "n_images": 20, "basis": "exists", "k_main": 0.05,
            "exists": rows, "kinds": [], "differences": ["only a few images"]}


def test_compression_what_we_found_gives_the_kept_share_the_control_and_the_differences():
    text = compression.what_we_found(_compression_summary(0.95, 0.5))
    assert "keeps 95% of the full context's ACC" in text and "5.6x fewer" in text
    assert "about 96%" in text and "ACC 0.50 (chance on yes/no questions: 0.50)" in text
    assert "- only a few images" in text and "As in the paper" in text
    assert "hold no answer of their own" in text
    less = compression.what_we_found(_compression_summary(0.7, 0.9))
    assert "keeps 70%" in less and "Less survives" in less and "no answer of their own" not in less


# ------------------------------------------------------------ 05 and 06
def _heatmap_summary(p_igos, p_att, n=8):
    return {"question": "what color is the square ?", "answer": "blue", "preset": "reference",
            "deletion": {"iGOS+": 0.05, "attention": 0.08, "gradient": 0.09, "random": 0.9},
            "pointing": {"iGOS+": p_igos, "attention": p_att, "gradient": 0.5, "random": 0.0},
            "mass": {"iGOS+": 0.4, "attention": 0.2, "gradient": 0.3, "random": 0.05},
            "area": 0.05, "n_scored": n,
            "switches": {"reference": {"pointing": True, "mass": 0.67}}}


def test_heatmaps_what_we_found_says_when_the_aggregate_contradicts_the_worked_example():
    text = heatmaps.what_we_found(_heatmap_summary(0.25, 0.375), "organism")
    assert "iGOS+ is the most faithful" in text and "peaks on the asked object" in text
    assert "0.25 of the time and attention 0.38" in text and "a random peak: 0.05" in text
    assert "**less often than attention**" in text and "the gap is 1 question," in text
    assert "too few to rank" in text and "By mass in the object the order is" in text
    close = _heatmap_summary(0.25, 0.375)
    close["deletion"]["attention"] = 0.055
    assert "no map is clearly more faithful" in heatmaps.what_we_found(close, "organism")
    close["deletion"]["iGOS+"] = 0.2
    assert "not the most faithful" in heatmaps.what_we_found(close, "organism")
    more = heatmaps.what_we_found(_heatmap_summary(0.75, 0.25), "organism")
    assert "more often than attention" in more and "the gap is 4 questions" in more
    many = heatmaps.what_we_found(_heatmap_summary(0.75, 0.25, n=100), "organism")
    assert "too few" not in many


def test_heatmaps_what_we_found_leaves_out_figures_a_summary_could_not_compute():
    s = _heatmap_summary(0.25, 0.375)
    s["deletion"]["iGOS+"] = None
    s["switches"]["reference"]["mass"] = None
    text = heatmaps.what_we_found({**s, "n_scored": 0, "area": None}, "m")
    assert text == ("**m**, the worked question ('what color is the square ?' -> 'blue'): none of "
                    "its figures could be computed, so there is nothing to set beside the paper.")


def test_heatmaps_per_map_table_puts_the_chance_level_beside_the_rates():
    q = pd.DataFrame({"item": [0, 0, 1, 1], "map": ["iGOS+", "random"] * 2,
                      "pointing": [1.0, 0.0, 0.0, 0.0], "mass": [0.61234, 0.05, 0.4, 0.07],
                      "area": [0.05, 0.05, 0.07, 0.07]})
    t = heatmaps.per_map_table(q)
    assert list(t) == ["points at the object", "mass in the object", "chance (object's area)"]
    assert t.loc["iGOS+"].tolist() == [0.5, 0.506, 0.06]


def test_heatmaps_zoo_found_reads_each_models_test():
    focus = pd.DataFrame([
        {"model": "a", "value": "igos_mass", "n_a": 10, "n_b": 5, "mean_a": 0.6, "mean_b": 0.2,
         "difference": 0.4, "p_mannwhitney": 0.01},
        {"model": "b", "value": "igos_mass", "n_a": 10, "n_b": 5, "mean_a": 0.5, "mean_b": 0.45,
         "difference": 0.05, "p_mannwhitney": 0.6},
        {"model": "c", "value": "igos_mass", "n_a": 12, "n_b": 0, "mean_a": 0.5, "mean_b": np.nan,
         "difference": np.nan, "p_mannwhitney": np.nan}])
    tests = {"top-IoU": SimpleNamespace(observed=0.1, ci_low=0.02, ci_high=0.2, p_value=0.01)}
    text = heatmaps.zoo_found(focus, tests)
    a, b, c, design = text.splitlines()
    assert "the opposite of the paper" in a and "as the paper finds" in b
    assert "no wrong answers" in c and "as the paper finds" in design
    weak = heatmaps.zoo_found(focus, {"top-IoU": SimpleNamespace(observed=0.01, ci_low=-0.1,
                                                                 ci_high=0.1, p_value=0.4)})
    assert "no evidence" in weak.splitlines()[-1]
    assert heatmaps.zoo_found(focus, {}, nonsense="nonsense answers") == (
        "Nothing to compare: nonsense answers.")


# ------------------------------------------------------------ 07
def test_ablation_what_we_found_sets_object_tokens_against_random_ones():
    s = {"n_scenes": 12, "high_norm_on_objects": 0.7,
         "lost": {"object,1,vqa": 1.0, "random,1,vqa": 0.1, "object,1,polling": 0.8,
                  "random,1,polling": 0.0},
         "denominators": {"object,1,vqa": 10, "random,1,vqa": 10, "object,1,polling": 10,
                          "random,1,polling": 10}}
    text = ablation.what_we_found(s, "organism")
    assert "vqa: object+1 1.00 of 10 lost, random 0.10 (the paper: 0.87 and 0.00)" in text
    assert "in every task, as the paper finds" in text and "70% of the highest-norm" in text
    s["lost"]["random,1,vqa"] = 1.0
    assert "only in part" in ablation.what_we_found(s, "organism")
    assert "nothing could be lost" in ablation.what_we_found({"lost": {}}, "organism")


# ------------------------------------------------------------ 08
def test_lens_chance_share_and_what_patches_read_as():
    assert lens.chance_share(50) == 0.04 and lens.chance_share(32000, 1) == 1 / 32000
    with pytest.raises(ValueError, match="no chance level"):
        lens.chance_share(0)
    assert [lens.word_kind(w) for w in ("right", "\u2581top", "red", "circle", "at")] == [
        "position", "position", "colour", "shape", "other"]
    what = Counter({"right": 6, "at": 2, "red": 1, "circle": 1})
    t = lens.reads_as_table(what, top=2)
    assert t["top-1 word at the best layer"].tolist() == ["right", "at"]
    assert t["share of object patches"].tolist() == [0.6, 0.2] and t.kind.tolist() == [
        "position", "other"]
    s = {"n_scenes": 20, "best_layer": 1, "best_share": 0.022}
    text = lens.what_we_found(s, "organism", 0.04, what)
    assert "2.2% of object patches" in text and "23.7%" in text and "4.0%" in text
    assert "not above that chance level" in text and "position words 60%" in text
    assert "where the object is" in text
    above = lens.what_we_found({**s, "best_share": 0.2}, "m", 0.04, Counter({"red": 3}))
    assert "5.0x above" in above and "**colour** words" in above


def test_lens_vs_paper_puts_the_chance_level_beside_the_share():
    df = pd.DataFrame({"object": "a", "rings": 0, "layer": [0, 1, 2], "share": [0.1, 0.3, 0.2]})
    t = lens.vs_paper(df, chance=0.04).set_index(["quantity", "paper_model"])
    assert list(t)[:2] == ["ours", "chance"]
    assert t.loc[("best_share", "LLaVA-1.5-7B"), "chance"] == 0.04
    assert t.loc[("best_layer_fraction", "LLaVA-1.5-7B"), "chance"] is None
    assert "chance" not in lens.vs_paper(df)  # the table the other callers know


def test_lens_chance_counts_an_annotated_objects_naming_words():
    vlm = SimpleNamespace(adapter=SimpleNamespace(unembedding=SimpleNamespace(
        weight=np.zeros((100, 4)))))
    assert lens.chance(vlm, pd.DataFrame({"object": ["a"], "share": [0.0]})) == 0.02
    rows = pd.DataFrame({"object": ["a", "a", "b"], "words": ["traffic light", "traffic light",
                                                               "dog"]})
    assert lens.chance(vlm, rows) == pytest.approx(1.5 / 100)


# ------------------------------------------------------------ 09
def test_lastpos_what_we_found_uses_the_rest_of_the_image_as_the_control():
    s = {"n_scenes": 20, "n_layers": 4, "relative_accuracy": {
        "object+1,all": 0.1, "other image,all": 1.0, "last row: object+1,all": 1.0,
        "last row: rest,all": 0.98}}
    text = lastpos.what_we_found(s, "organism")
    assert "relative accuracy of 0.10 (the paper: 0.67" in text and "leaves 1.00" in text
    assert "read from the object's own tokens" in text and "no effect, as the paper" in text
    s["relative_accuracy"].update({"object+1,all": 1.0, "last row: rest,all": 0.5})
    text = lastpos.what_we_found(s, "organism")
    assert "hurts no more" in text and "the last row matters here" in text
    assert "nothing for a cut to lose" in lastpos.what_we_found({"relative_accuracy": {}}, "m")


# ------------------------------------------------------------ thin notebooks
def logic_lines(path) -> int:
    """Code lines of a notebook's code cells but the parameters cell: no blank line, no comment,
    no line of an import statement."""
    import ast

    import jupytext

    n = 0
    for cell in jupytext.read(path).cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        imports = {line for node in ast.walk(ast.parse(cell.source))
                   if isinstance(node, (ast.Import, ast.ImportFrom))
                   for line in range(node.lineno, node.end_lineno + 1)}
        n += sum(1 for i, line in enumerate(cell.source.splitlines(), 1)
                 if line.strip() and not line.strip().startswith("#") and i not in imports)
    return n


def test_logic_lines_counts_code_but_not_imports_comments_or_parameters(tmp_path):
    nb = tmp_path / "x.py"
    nb.write_text('# %% tags=["parameters"]\na = 1\n\n# %%\nimport os\nfrom pathlib import (\n'
                  '    Path)\n# a comment\nx = 1\n\ny = [x,\n     2]\n')
    assert logic_lines(nb) == 3


@pytest.mark.parametrize("prefix", sorted(CLOSING))
def test_numbered_notebooks_stay_at_most_40_logic_lines(prefix):
    [path] = NB.glob(f"{prefix}_*.py")
    assert logic_lines(path) <= 40, f"{path.name}: {logic_lines(path)} logic lines"
