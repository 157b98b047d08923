"""The variant x mechanism row: consistent numbers, and a lens share checked from scratch."""

import numpy as np
import pandas as pd
import pytest
import torch

from vlmscope.datasets.synthetic import World, _mix


@pytest.fixture(scope="module")
def row_and_vlm(tmp_path_factory):
    import vlmscope
    from vlmscope.organism.mechanisms import measure

    vlm = vlmscope.load("organism-vit-s")
    row = measure(vlm, "organism-vit-s", n=1, seed=7, store=tmp_path_factory.mktemp("mech"),
                  eval_n=4, ablation_n=1)
    return row, vlm


@pytest.mark.slow
def test_row_is_consistent(row_and_vlm):
    from vlmscope.organism.mechanisms import LENS_SHARE, QUERY_CUT_F1, QUERY_ROUTING_F1

    row, vlm = row_and_vlm
    L = vlm.adapter.n_layers
    assert row["n_layers"] == L
    for cut, curve in row["knockout_start_curve"].items():
        assert len(curve) == L + 1
        assert curve[-1] == 1.0, cut  # starting the cut after the last layer cuts nothing
        assert row["knockout_f1_all_layers"][cut] == curve[0]
    assert set(row["knockout_f1_all_layers"]) == {"img->gen", "img->txt", "img->txt+gen"}
    shares = row["lens_share_by_layer"]
    assert len(shares) == L and all(0 <= s <= 1 for s in shares)
    assert row["lens_best_share"] == max(shares) and shares[row["lens_best_layer"]] == max(shares)
    fr = row["fractions_by_layer"]
    total = np.array(fr["image"]) + np.array(fr["query"]) + np.array(fr["generated"])
    assert np.allclose(total, 1.0, atol=1e-3)
    assert set(row["ablation_lost"]) <= {"object", "object+1", "random"}
    f1 = row["knockout_f1_all_layers"]
    assert row["shows_query_routing"] == (f1["img->gen"] >= QUERY_ROUTING_F1
                                          and f1["img->gen"] - f1["img->txt+gen"] >= QUERY_ROUTING_F1
                                          and f1["img->txt"] <= QUERY_CUT_F1)
    exact = row["knockout_exact_f1_all_layers"]  # colour, shape and place all right
    assert set(exact) == set(f1) and all(0 <= v <= 1 for v in exact.values())
    assert row["shows_lens_object_words"] == (row["lens_best_share"] >= LENS_SHARE)
    assert set(row["accuracy"]) >= {"color", "describe_f1"}


@pytest.mark.slow
def test_lens_share_matches_a_from_scratch_logit_lens(row_and_vlm):
    """Output hidden states, final norm and unembedding by hand; object patches from the mask."""
    row, vlm = row_and_vlm
    scene = World().scene(_mix(7, 0))  # the one scene of the row (n=1, seed=7)
    model, proc = vlm.model, vlm.processor
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the image ."}]}],
        add_generation_prompt=True)
    inputs = proc(text=[text], images=[scene.image], return_tensors="pt")
    with torch.no_grad():
        hs = model(**inputs, output_hidden_states=True).hidden_states
    lm = model.model.language_model
    img = (inputs["input_ids"][0] == model.config.image_token_id).nonzero()[:, 0]
    L = len(hs) - 1
    tok = proc.tokenizer
    from vlmscope.lens import image_lens

    suite = image_lens(vlm, vlm.prepare(scene.image, "describe the image ."), k=1)
    per_layer = []
    for layer in range(L):
        h = hs[layer + 1][0, img]
        if layer < L - 1:  # the last hidden state already went through the final norm
            h = lm.norm(h)
        top = model.lm_head(h).argmax(-1)
        assert suite.top_tokens(layer) == tok.convert_ids_to_tokens(top.tolist()), layer
        shares = []
        for o in scene.objects:
            cells = o.mask.reshape(8, 8, 8, 8).any(axis=(1, 3)).reshape(-1)
            words = {tok.convert_tokens_to_ids(o.color), tok.convert_tokens_to_ids(o.shape)}
            picked = top[torch.from_numpy(cells)]
            shares.append(float(np.mean([int(t) in words for t in picked])))
        per_layer.append(np.mean(shares))
    assert np.allclose(per_layer, row["lens_share_by_layer"], atol=1e-3)


@pytest.mark.slow
def test_table_has_the_paper_row_and_each_model(row_and_vlm):
    from vlmscope.organism.mechanisms import table_markdown

    row, _ = row_and_vlm
    md = table_markdown([row, {**row, "model": "other"}])
    assert "paper (LLaVA-1.5-7B)" in md and "`organism-vit-s`" in md and "`other`" in md
    assert len(md.splitlines()) == 5


def test_no_scenes_is_a_clear_error():
    from vlmscope.organism.mechanisms import measure

    with pytest.raises(ValueError, match="at least 1 scene"):
        measure(None, "x", n=0)


@pytest.mark.slow
def test_benchmark_script_merges_rows_into_json(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "organism_mechanisms.py"
    spec = importlib.util.spec_from_file_location("organism_mechanisms", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "m.json"
    out.write_text(json.dumps({"rows": {"earlier": {"model": "earlier"}}}))
    assert mod.main(["--model", "organism-vit-s", "--name", "s", "--n", "1", "--eval-n", "0",
                     "--ablation-n", "0", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["rows"]) == {"earlier", "s"} and data["paper"]["lens_best_share"] == 0.237
    assert data["rows"]["s"]["ablation_lost"] is None and data["rows"]["s"]["accuracy"] is None
    printed = capsys.readouterr().out
    assert "| `s` | 2 |" in printed and "| `earlier` | - |" in printed


# ------------------------------------------------------------- notebook 11's helpers
def _row(ko_gen=0.0, ko_txt=1.0, lens=0.05, L=4, curve=None):
    curve = curve or [ko_gen] + [1.0] * L
    return {"n_layers": L, "knockout_f1_all_layers": {"img->gen": ko_gen, "img->txt": ko_txt,
                                                      "img->txt+gen": 0.0},
            "knockout_start_curve": {"img->gen": curve, "img->txt": [ko_txt] + [1.0] * L,
                                     "img->txt+gen": [0.0] + [1.0] * L},
            "lens_share_by_layer": [lens] * L, "lens_best_layer": L - 1, "lens_best_share": lens,
            "fractions_by_layer": {"image": [0.5] * L},
            "shows_query_routing": ko_gen >= 0.2 and ko_txt <= 0.5,
            "shows_lens_object_words": lens >= 0.1, "accuracy": {"describe_f1": 0.99}}


def test_finished_rows_drop_checkpoints_and_the_table_puts_the_paper_first():
    from vlmscope.organism import mechanisms as M

    rows = M.finished_rows({"rows": {"organism-vit-m": _row(), "organism-vit-m8@C300": _row(),
                                     "organism-vit-m8": _row(L=8)}})
    assert list(rows) == ["organism-vit-m", "organism-vit-m8"]
    assert M.changes("organism-vit-m8@C300") == "8 decoder layers; the checkpoint at C300"
    t = M.variants_table(rows)
    assert t.model.tolist()[0].startswith("paper") and t.model.tolist()[1:] == list(rows)
    assert t.changes.tolist()[1:] == ["the bundled recipe (vit tower, 4-layer decoder)",
                                      "8 decoder layers"]
    assert t["lens best depth"].tolist()[1:] == [1.0, 1.0]


def test_what_we_found_and_vs_paper_follow_the_rows():
    from vlmscope.organism import mechanisms as M

    none = M.what_we_found({"a": _row(curve=[0.0, 0.5, 1.0, 1.0, 1.0])})
    assert "none routes the image through the query" in none and "none reaches a lens share" in none
    assert "harmless from layer 2 of 4" in none and "layers 0-1" in none
    both = M.what_we_found({"a": _row(), "b": _row(ko_gen=0.4, ko_txt=0.1, lens=0.2)})
    assert "b routes the image through the query tokens" in both
    assert "b shows object words in the lens" in both
    t = M.vs_paper({"a": _row(lens=0.07)})
    assert t["a"].tolist() == [0.0, 1.0, 0.07] and t["paper (LLaVA-1.5-7B)"].tolist()[0] == 0.4


def test_query_routing_needs_more_than_the_language_prior():
    from vlmscope.organism import mechanisms as M

    paper = {"img->gen": 0.4, "img->txt": 0.05, "img->txt+gen": 0.0}
    assert M.routes_through_query(paper)
    # the same F1 with both cuts: shapes guessed without the image (organism-vit-m-lm)
    assert not M.routes_through_query({**paper, "img->txt+gen": 0.35})
    assert not M.routes_through_query({**paper, "img->txt": 0.9})  # the query cut must hurt
    assert not M.routes_through_query({**paper, "img->gen": 0.1})
    prior = _row(ko_gen=0.37, ko_txt=0.93)
    prior["knockout_f1_all_layers"]["img->txt+gen"] = 0.43
    prior["knockout_exact_f1_all_layers"] = {"img->gen": 0.0}
    text = M.what_we_found({"lm": prior})
    assert "no more than with both cuts (0.43)" in text and "exact-object F1 0.00" in text
    assert "a language prior" not in M.what_we_found({"a": _row(ko_gen=0.4, ko_txt=0.1)})
    t = M.variants_table({"lm": prior, "a": _row()})
    assert t["KO img->gen exact"].iloc[1] == 0.0 and pd.isna(t["KO img->gen exact"].iloc[2])


def test_compare_rows_flags_a_number_that_moved(tmp_path):
    import json

    from vlmscope.organism import mechanisms as M

    rec = _row()
    moved = json.loads(json.dumps(rec))
    moved["knockout_start_curve"]["img->gen"][1] = 0.5
    c = M.compare_rows(moved, rec)
    assert c.same.sum() == len(c) - 1
    assert c[~c.same].quantity.tolist() == ["knockout_start_curve[img->gen][1]"]
    assert not M.compare_rows(rec, None).same.any()  # nothing recorded: nothing is "the same"
    s = M.write(tmp_path, {"a": rec}, c)
    assert json.loads((tmp_path / "11_summary.json").read_text()) == s
    assert s["live_same_as_recorded"] == len(c) - 1 and s["query_routing"] == []
