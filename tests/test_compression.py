"""Compressed context on a tiny model: pruning == masking, K=100% == full, top-K from eager."""

import json
import math

import pandas as pd
import pytest
import torch

from vlmscope import compression as C
from vlmscope.datasets.synthetic import World


@pytest.fixture(scope="module")
def scene():
    return World().scene(seed=4, n_objects=3)


@pytest.fixture(scope="module")
def ctx(tiny, scene):
    return C.describe(tiny, scene.image, C.CompressionConfig(describe_tokens=6))


QUESTION = "is there a red circle ?"


@pytest.mark.parametrize("followup", C.FOLLOWUPS)
@pytest.mark.parametrize("variant", ["both", "query", "image"])
def test_pruned_cache_gives_the_logits_of_masking(tiny, ctx, variant, followup):
    cfg = C.CompressionConfig(followup=followup, max_new_tokens=2)
    masked = C.masked_logits(tiny, ctx, QUESTION, variant, 0.1, followup)  # [n, vocab]
    pruned = C.answer(tiny, ctx, QUESTION, variant, 0.1, cfg).logits[:len(masked)]
    assert pruned.shape == masked.shape
    assert torch.allclose(pruned, masked, atol=1e-5, rtol=1e-4)
    # and pruning changed something: the uncompressed cache answers differently
    full = C.answer(tiny, ctx, QUESTION, "full", 1.0, cfg).logits[:len(masked)]
    assert (full - pruned).abs().max() > 1e-3


def test_positions_are_the_original_ones(tiny, ctx):
    """Renumbering the kept entries 0..n-1 (what a naive cache cut does) changes the logits."""
    keep = C.kept_positions(ctx, "both", 0.1)
    fu = C.followup_tokens(tiny, ctx, QUESTION, "turn")
    right = C.greedy_from_cache(tiny, C.prune_cache(ctx.cache, keep), fu.ids, fu.positions, 1)[1]
    shifted = fu.positions - fu.positions[0] + keep.shape[1]
    wrong = C.greedy_from_cache(tiny, C.prune_cache(ctx.cache, keep), fu.ids, shifted, 1)[1]
    assert right.shape == wrong.shape == (len(fu.ids), right.shape[1])
    assert (right - wrong).abs().max() > 1e-3


def test_decoding_from_the_full_cache_matches_one_forward_pass(tiny, ctx):
    """Every decode step (not only the first call) sits at the right position."""
    a = C.answer(tiny, ctx, QUESTION, "full", 1.0, C.CompressionConfig(followup="replace",
                                                                        max_new_tokens=6))
    fu = C.followup_tokens(tiny, ctx, QUESTION, "replace")
    fed = a.logits.shape[0] - len(fu.ids)
    assert fed >= 2
    seq = torch.cat([fu.sequence, a.token_ids[:fed]])[None].to(tiny.device)
    inputs = dict(ctx.prepared.inputs, input_ids=seq, attention_mask=torch.ones_like(seq))
    with torch.no_grad():
        ref = tiny.model(**inputs).logits[0, ctx.prompt_length:].float().cpu()  # [n + fed, V]
    assert torch.allclose(a.logits, ref, atol=1e-5, rtol=1e-4)
    assert a.token_ids.tolist()[:fed] == ref[:-1].argmax(-1)[len(fu.ids) - 1:].tolist()


def test_both_at_k_100_is_full(tiny, ctx):
    cfg = C.CompressionConfig(max_new_tokens=4)
    both = C.answer(tiny, ctx, QUESTION, "both", 1.0, cfg)
    full = C.answer(tiny, ctx, QUESTION, "full", 1.0, cfg)
    assert torch.equal(C.kept_positions(ctx, "both", 1.0), C.kept_positions(ctx, "full"))
    assert both.kept_tokens == full.kept_tokens == ctx.prompt_length
    assert both.token_ids.tolist() == full.token_ids.tolist() and both.text == full.text
    assert torch.equal(both.logits, full.logits)


def test_kept_image_tokens_are_the_top_k_of_eager_attention(tiny, ctx):
    """Recompute the head- and step-averaged attention with stock eager ``output_attentions``."""
    p, gen = ctx.prepared, ctx.generation
    P, n = ctx.prompt_length, max(1, gen.token_ids.numel())
    inputs = dict(p.inputs, input_ids=gen.sequence.to(tiny.device))
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.no_grad():
        att = tiny.model(**inputs, output_attentions=True).attentions  # L x [1, H, T, T]
    k = C.n_keep(len(p.groups.image), 0.25)
    kept = C.kept_positions(ctx, "image", 0.25)
    both = C.kept_positions(ctx, "both", 0.25)
    assert len(att) == tiny.adapter.n_layers == kept.shape[0]
    for l, a in enumerate(att):
        rows = a[0].float().mean(0)[P - 1:P - 1 + n]  # [n, T]: rows predicting the description
        scores = rows[:, p.groups.image].mean(0)  # [n_image]
        expected = set(p.groups.image[scores.topk(k).indices].tolist())
        assert set(kept[l].tolist()) == expected
        assert set(both[l].tolist()) == expected | set(p.groups.query.tolist())
    # the layers choose their own sets (a shared set would hide a per-layer bug)
    assert len({tuple(r.tolist()) for r in kept}) > 1


def test_prune_cache_gathers_without_touching_the_source(tiny, ctx):
    keep = C.kept_positions(ctx, "both", 0.05)  # [L, kept]
    before = [layer.keys.clone() for layer in ctx.cache.layers]
    pruned = C.prune_cache(ctx.cache, keep)
    assert pruned.get_seq_length() == keep.shape[1] == 4 + len(ctx.prepared.groups.query)
    for l, (layer, src) in enumerate(zip(pruned.layers, ctx.cache.layers)):
        assert layer.keys.shape == (1, src.keys.shape[1], keep.shape[1], src.keys.shape[3])
        assert torch.equal(layer.keys, src.keys[:, :, keep[l]])
        assert torch.equal(layer.values, src.values[:, :, keep[l]])
        assert torch.equal(src.keys, before[l])


def test_followup_formats(tiny, ctx):
    P = ctx.prompt_length
    turn = C.followup_tokens(tiny, ctx, QUESTION, "turn")
    assert torch.equal(turn.sequence[:P], ctx.prepared.input_ids[0].cpu())
    assert torch.equal(turn.sequence[turn.positions], turn.ids)
    assert turn.skipped.numel() > 0 and int(turn.skipped[0]) == P  # the description turn
    assert int(turn.positions[0]) == P + turn.skipped.numel()
    words = tiny.tokenizer.convert_ids_to_tokens(turn.ids.tolist())
    assert words[:2] == ["user", ":"] and words[-2:] == ["assistant", ":"]
    rep = C.followup_tokens(tiny, ctx, QUESTION, "replace")
    assert int(rep.positions[0]) == P and rep.skipped.numel() == 0
    assert tiny.tokenizer.convert_ids_to_tokens(rep.ids.tolist()) == \
        ["is", "there", "a", "red", "circle", "?", "assistant", ":"]


def test_turn_needs_the_prompt_to_be_a_prefix(tiny, ctx, monkeypatch):
    real = tiny.processor.apply_chat_template
    monkeypatch.setattr(tiny.processor, "apply_chat_template",
                        lambda msgs, **kw: "USER: hello " + real(msgs, **kw))
    with pytest.raises(ValueError, match="not a prefix"):
        C.followup_tokens(tiny, ctx, QUESTION, "turn")


def test_bad_arguments(tiny, ctx):
    for bad in (0, -0.1, 1.5, float("nan"), "lots"):
        with pytest.raises(ValueError, match="k_frac"):
            C.CompressionConfig(k_frac=bad)
        with pytest.raises(ValueError, match="k_frac"):
            C.answer(tiny, ctx, QUESTION, "both", bad)
    with pytest.raises(ValueError, match="k_frac"):
        C.CompressionConfig(k_frac=(0.05, 2.0))
    with pytest.raises(ValueError, match="known: both, query, image, full, direct"):
        C.CompressionConfig(variants=("both", "nothing"))
    with pytest.raises(ValueError, match="known: both, query, image, full, direct"):
        C.answer(tiny, ctx, QUESTION, "top")
    with pytest.raises(ValueError, match="followup"):
        C.CompressionConfig(followup="chat")
    with pytest.raises(ValueError, match="known: exists, color"):
        C.CompressionConfig(questions=("describe",))


def test_n_keep_is_a_ceiling_of_at_least_one():
    assert C.n_keep(576, 0.05) == 29  # the paper truncates to 28
    assert C.n_keep(64, 0.05) == 4
    assert C.n_keep(640, 0.1) == 64
    assert C.n_keep(10, 0.01) == 1
    assert C.n_keep(64, 1.0) == 64


def test_exists_pair_has_a_yes_and_a_hard_no():
    world = World()
    hard = 0
    for seed in range(40):
        s = world.scene(seed)
        yes, no = C.exists_pair(s, seed)
        assert (yes.answer, no.answer) == ("yes", "no")
        assert yes.target in s.objects and yes.text == f"is there a {yes.target.name} ?"
        color, shape = no.text.split()[3:5]
        assert s.object_by(shape=shape, color=color) is None
        hard += s.object_by(shape=shape) is not None and s.object_by(color=color) is not None
        assert C.exists_pair(s, seed) == (yes, no)  # seeded
    assert hard >= 20  # hard negatives where the scene allows (multi-object scenes)


def test_scores_acc_and_acc_plus():
    df = pd.DataFrame({
        "variant": ["both"] * 4 + ["full"] * 4, "k_frac": [0.05] * 4 + [1.0] * 4,
        "image_id": [0, 0, 1, 1] * 2, "correct": [True, True, True, False, True, True, True, True],
        "k": [3] * 4 + [64] * 4, "kept_tokens": [12] * 4 + [73] * 4, "full_tokens": [73] * 8})
    t = C.scores(df).set_index("variant")
    assert t.loc["both", "acc"] == 0.75 and t.loc["both", "acc_plus"] == 0.5
    assert t.loc["full", "acc"] == 1.0 and t.loc["full", "acc_plus"] == 1.0
    assert t.loc["both", "relative"] == 0.75
    assert t.loc["both", "compression"] == pytest.approx(73 / 12)
    assert list(t.index) == ["both", "full"]


def test_is_correct_reads_the_leading_words():
    assert C.is_correct("Yes, there is.", "yes") and C.is_correct("no", "no")
    assert not C.is_correct("eyes yes", "yes") and not C.is_correct("", "no")
    assert C.is_correct("top left", "top left") and not C.is_correct("top", "top left")
    assert not C.is_correct("top right", "top left")


def test_scores_by_kind_are_relative_to_their_own_full():
    df = pd.DataFrame({
        "kind": ["count"] * 4 + ["color"] * 4, "variant": ["both", "full"] * 4,
        "k_frac": [0.05, 1.0] * 4, "image_id": [0, 0, 1, 1] * 2,
        "correct": [True, True, False, True, False, True, False, False],
        "k": [3, 64] * 4, "kept_tokens": [12, 73] * 4, "full_tokens": [73] * 8})
    t = C.scores(df, by=("kind",)).set_index(["kind", "variant"])
    assert t.loc[("count", "both"), "relative"] == 0.5  # 0.5 / 1.0
    assert t.loc[("color", "both"), "relative"] == 0.0  # 0.0 / 0.5
    assert t.loc[("color", "full"), "acc"] == 0.5


def test_scene_questions_follow_the_kinds(scene):
    qs = C.scene_questions(scene, ("exists", "count", "color"))
    assert [q.kind for q in qs] == ["exists", "exists", "count", "color"]
    assert qs[2].answer == ["zero", "one", "two", "three", "four"][len(scene.objects)]
    assert [q.kind for q in C.scene_questions(scene, ("shape",))] == ["shape"]


def test_compress_scene_rows(tiny, scene):
    cfg = C.CompressionConfig(k_frac=(0.05, 0.5), describe_tokens=4, max_new_tokens=2)
    df = C.compress_scene(tiny, scene, cfg)
    assert len(df) == (3 * 2 + 2) * 2
    assert set(df.truth) == {"yes", "no"} and set(df.kind) == {"exists"}
    n_q = len(tiny.prepare(scene.image, "describe the image .").groups.query)
    both = df[df.variant == "both"].set_index("k_frac")
    assert (both.loc[0.05, "kept_tokens"] == 4 + n_q).all()
    assert (both.loc[0.5, "kept_tokens"] == 32 + n_q).all()
    q = df[df.variant == "query"]
    assert (q.kept_tokens == n_q).all() and q.groupby("question_id").answer.nunique().eq(1).all()
    assert (df[df.variant == "full"].compression == 1.0).all()
    assert df.correct.dtype == bool
    # one description run serves several question sets
    ctx = C.describe(tiny, scene.image, cfg)
    more = C.compress_scene(tiny, scene, C.CompressionConfig(
        questions=("count",), variants=("full",), describe_tokens=4, max_new_tokens=2), ctx)
    assert list(more.kind) == ["count"] and (more.description == ctx.generation.text).all()


def test_run_and_cli(tiny, tiny_dir, tmp_path, capsys):
    from vlmscope.cli import main
    from vlmscope.findings import compression
    from vlmscope.runner import run

    cfg = compression.Config(max_new_tokens=3)
    first = run("compression", tiny, model_name=str(tiny_dir), n=1, seed=2, out=tmp_path,
                config=cfg, progress=False).summary
    assert first["computed"] == 1 and first["rows"] == 10
    assert {"acc[both@0.05]", "acc_plus[both@0.05]", "acc[full]", "acc[direct]"} <= set(first)
    assert math.isclose(first["compression[full]"], 1.0)
    assert main(["run", "compression", "--model", str(tiny_dir), "--n", "2", "--seed", "2",
                 "--out", str(tmp_path), "--max-new-tokens", "3"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert again["computed"] == 1 and again["reused"] == 1 and again["rows"] == 20


def test_compression_curves_draws_every_variant():
    from matplotlib.figure import Figure

    from vlmscope import plots

    rows = [{"variant": v, "k_frac": k, "acc": 0.5, "acc_plus": 0.25, "compression": 2.0}
            for v in ("both", "query", "image") for k in (0.05, 0.5)]
    rows += [{"variant": v, "k_frac": 1.0, "acc": 0.75, "acc_plus": 0.5, "compression": 1.0}
             for v in ("full", "direct")]
    fig = plots.compression_curves(pd.DataFrame(rows), title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [t.get_text().split()[0] for t in fig.axes[1].get_legend().get_texts()]
    assert sorted(labels) == sorted(C.VARIANTS)
    assert [round(y, 2) for y in fig.axes[0].lines[0].get_ydata()] == [0.5, 0.5]


def test_followup_works_says_why_a_template_cannot_take_the_next_turn(tiny, ctx, standin):
    """The organism's template continues the cached prompt with a next turn; LLaVA-1.5's
    ("USER: <image>\\nq ASSISTANT:") does not, and notebook 04 leaves 'turn' out for it."""
    assert C.followup_works(tiny, ctx, "turn") is None
    llava = standin("standin-llava-1.5")
    c = C.describe(llava, World().scene(seed=1).image, C.CompressionConfig(describe_tokens=4))
    assert "not a prefix" in C.followup_works(llava, c, "turn")
    assert C.followup_works(llava, c, "replace") is None
