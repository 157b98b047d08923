"""The training recipe: loss goes down in a few steps; an interrupted run resumes exactly."""

import json

import numpy as np

import pytest
import torch
from safetensors.torch import load_file

from vlmscope.organism.build import DecoderSpec, VisionSpec
from vlmscope.organism.train import Recipe, TrainConfig, _patch_labels
from vlmscope.datasets.synthetic import World


@pytest.fixture
def tiny_specs(monkeypatch):
    """Shrink the zoo's specs so a recipe step takes milliseconds."""
    from vlmscope.organism import train

    monkeypatch.setitem(train.VISION, "vit", VisionSpec("clip", hidden=32, layers=1, heads=2))
    monkeypatch.setitem(train.DECODERS, "s", DecoderSpec(32, 1, 2, 2, 64))


def _cfg(**kw):
    base = dict(vision="vit", decoder="s", batch=8, steps_a=6, steps_b=6, steps_c=0, warmup=1,
                ckpt_every=3, lr_a=3e-3, lr_b=3e-3)
    base.update(kw)
    return TrainConfig(**base)


def test_patch_labels_follow_masks():
    sc = World().scene(seed=1)
    lab = _patch_labels(sc, grid=8, patch=8)
    assert lab.shape == (64, 7)
    fg = lab[:, 0] > 0
    assert fg.sum() >= len(sc.objects)
    assert lab[:, 4].sum() == len(sc.objects)  # one centre patch per object
    # conjunctions agree with the separate labels
    combo = lab[fg, 5] - 1
    assert np.array_equal(combo // 5, lab[fg, 0] - 1) and np.array_equal(combo % 5, lab[fg, 1] - 1)
    cell = (lab[fg, 6] - 1) % 9
    assert np.array_equal((lab[fg, 6] - 1) // 9, combo)
    assert np.array_equal(cell, lab[fg, 2] * 3 + lab[fg, 3])


def test_loss_goes_down(tiny_specs, tmp_path):
    r = Recipe(_cfg(steps_a=25, steps_b=0, ckpt_every=100, batch=16), tmp_path / "a", progress=False)
    log = r.run()
    assert log["stages"]["A"]["steps"] == 25
    # first logged losses against the last ones (checkpoint keeps the history)
    r2 = Recipe(_cfg(steps_a=0, steps_b=25, ckpt_every=100, batch=16), tmp_path / "b",
                progress=False)
    losses = []
    orig = r2._loss_qa

    def spy(stage, step):
        loss = orig(stage, step)
        losses.append(float(loss))
        return loss

    r2._loss_qa = spy
    r2.run()
    assert len(losses) == 25
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    assert (tmp_path / "b" / "config.json").exists() and (tmp_path / "b" / "training.json").exists()
    info = json.loads((tmp_path / "b" / "training.json").read_text())
    assert info["device"]["device"] == "cpu" and info["total_seconds"] >= 0


def test_interrupted_run_resumes_to_the_same_weights(tiny_specs, tmp_path):
    full = Recipe(_cfg(), tmp_path / "full", progress=False)
    full.run()

    class Stop(Exception):
        pass

    part = Recipe(_cfg(), tmp_path / "part", progress=False)
    calls = {"n": 0}
    orig = part._loss_qa

    def crash_after_four(stage, step):
        calls["n"] += 1
        if calls["n"] > 4:  # stage B dies after its step-3 checkpoint
            raise Stop
        return orig(stage, step)

    part._loss_qa = crash_after_four
    with pytest.raises(Stop):
        part.run()
    state = json.loads((tmp_path / "part" / "checkpoint" / "state.json").read_text())
    assert state["stage"] == "B" and state["step"] == 3 and state["done"] == ["A"]
    resumed = Recipe(_cfg(), tmp_path / "part", progress=False)
    resumed.run()
    a = load_file(tmp_path / "full" / "model.safetensors")
    b = load_file(tmp_path / "part" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_resume_refuses_a_different_configuration(tiny_specs, tmp_path):
    Recipe(_cfg(steps_b=3), tmp_path / "x", progress=False).run()
    with pytest.raises(ValueError, match="another configuration"):
        Recipe(_cfg(steps_b=4), tmp_path / "x", progress=False).run()


def test_shared_tower_is_reused(tiny_specs, tmp_path):
    towers = tmp_path / "towers"
    first = Recipe(_cfg(steps_b=0), tmp_path / "m1", progress=False, tower_cache=towers)
    first.run()
    assert len(list(towers.glob("*.safetensors"))) == 1
    second = Recipe(_cfg(steps_b=0), tmp_path / "m2", progress=False, tower_cache=towers)
    second._loss_a = lambda step: (_ for _ in ()).throw(AssertionError("stage A re-ran"))
    log = second.run()
    assert "shared_from" in log["stages"]["A"]
    t1 = first.model.model.vision_tower.state_dict()
    t2 = second.model.model.vision_tower.state_dict()
    assert all(torch.equal(t1[k], t2[k]) for k in t1)


def test_multi_turn_batches_label_each_answer_and_do_not_leak(tiny_specs, tmp_path):
    r = Recipe(_cfg(batch=16, turns_c=4), tmp_path / "mt", progress=False)
    batch, labels, turn_of = r._qa_batch("C", 0)
    tok = r.tok
    multi = 0
    for i in range(labels.shape[0]):
        text = tok.decode(batch["input_ids"][i], skip_special_tokens=False)
        answers = [seg.split("</s>")[0].strip() for seg in text.split("assistant :")[1:]]
        n = int(turn_of[i].max()) + 1
        assert n == len(answers) >= 1
        multi += n > 1
        for k, ans in enumerate(answers):
            got = tok.decode(labels[i][turn_of[i] == k], skip_special_tokens=True).strip()
            assert got == ans
        questions = [seg.split("assistant")[0] for seg in text.split("user :")[1:]]
        if any("describe" in q for q in questions):
            assert "describe" in questions[-1], "describe must come last"
    assert multi > 0
    # single-turn in stage B
    _, _, turn_b = r._qa_batch("B", 0)
    assert int(turn_b.max()) == 0


# ------------------------------------------------------------ recipe options (variants)
def test_default_recipe_is_the_bundled_members_recipe():
    """The variant options are off by default: the bundled members' recorded recipe."""
    from dataclasses import asdict
    from pathlib import Path

    from vlmscope.organism import ZOO
    from vlmscope.organism.build import CHAT_TEMPLATE, make_processor

    root = Path(__file__).resolve().parents[1] / "data" / "organism"
    for name, (vision, decoder) in ZOO.items():
        recorded = json.loads((root / name / "training.json").read_text())["config"]
        ours = json.loads(json.dumps(asdict(TrainConfig(vision=vision, decoder=decoder,
                                                        threads=recorded["threads"]))))
        assert {k: ours[k] for k in recorded} == recorded, name
        assert (ours["system"], ours["steps_t"], ours["steps_p"], ours["tower_from"]) == ("", 0, 0, "")
    proc = make_processor(VisionSpec("clip"))
    bundled = json.loads((root / "organism-vit-m" / "tokenizer.json").read_text())["model"]["vocab"]
    assert proc.tokenizer.get_vocab() == bundled
    assert proc.chat_template == CHAT_TEMPLATE


def test_system_message_option_is_spoken_first_and_keeps_base_ids():
    from vlmscope.organism.build import LLAVA_SYSTEM, make_processor, system_words

    base, sys_ = make_processor(VisionSpec("clip")), make_processor(VisionSpec("clip"), LLAVA_SYSTEM)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the image ."}]}]
    text = sys_.apply_chat_template(msgs, add_generation_prompt=True)
    assert text.startswith(LLAVA_SYSTEM + " USER: <image>")
    assert base.apply_chat_template(msgs, add_generation_prompt=True).startswith("USER: <image>")
    ids = sys_.tokenizer(text)["input_ids"]
    assert sys_.tokenizer.unk_token_id not in ids  # every system word is in the vocabulary
    new = system_words(LLAVA_SYSTEM)
    assert new and all(sys_.tokenizer.convert_tokens_to_ids(w) >= len(base.tokenizer) for w in new)
    bv = base.tokenizer.get_vocab()
    assert all(sys_.tokenizer.get_vocab()[w] == i for w, i in bv.items())
    with pytest.raises(ValueError, match="template characters"):
        make_processor(VisionSpec("clip"), "{{ evil }}")


def test_deeper_decoder_spec_has_eight_layers():
    from vlmscope.organism.build import DECODERS, make_config, make_processor

    tok = make_processor(VisionSpec("clip")).tokenizer
    cfg = make_config(VisionSpec("clip"), DECODERS["m8"], len(tok), tok)
    assert cfg.text_config.num_hidden_layers == 8
    assert cfg.text_config.hidden_size == DECODERS["m"].hidden


def _snapshot(r):
    return {k: v.clone() for k, v in r.model.state_dict().items()}


def _changed(before, r, part):
    after = r.model.state_dict()
    return any(not torch.equal(before[k], after[k]) for k in before if part in k)


def test_text_stage_trains_the_decoder_alone_on_the_scene_in_words(tiny_specs, tmp_path):
    r = Recipe(_cfg(steps_a=0, steps_b=0, steps_t=3, lr_t=3e-3), tmp_path / "t", progress=False)
    batch = r._text_batch(0)
    texts = r.tok.batch_decode(batch["input_ids"], skip_special_tokens=True)
    scenes = r._scenes("T", 0)
    assert all(s.description().split(" . ")[0].replace(" ", "") in t.replace(" ", "")
               for s, t in zip(scenes, texts))
    assert not (batch["input_ids"] == r.model.config.image_token_id).any()
    before = _snapshot(r)
    log = r.run()
    assert log["stages"]["T"]["steps"] == 3
    assert _changed(before, r, "language_model") and _changed(before, r, "lm_head")
    assert not _changed(before, r, "multi_modal_projector")
    assert not _changed(before, r, "vision_tower")


def test_text_stage_is_evaluated_with_the_scene_in_words_and_no_image(tiny_specs, tmp_path):
    from vlmscope.datasets.synthetic import World
    from vlmscope.organism.evaluate import evaluate_generate, raw_generate

    r = Recipe(_cfg(steps_a=0, steps_b=0, steps_t=2, eval_every=1), tmp_path / "t", progress=False)
    calls = []
    r.run(evaluate=lambda recipe, stage: calls.append(stage) or {"ok": 1})
    assert calls == ["T", "T"]  # every eval_every step of stage T; none of stage A (0 steps)

    asked = []

    def generate(images, questions):
        asked.append((images, questions))
        return ["?"] * len(questions)
    evaluate_generate(generate, n=2, seed=5, text=True)
    scenes = [s for s, _ in World().samples(2, 5)]
    assert all(images is None for images, _ in asked)
    questions = [q for _, qs in asked for q in qs]
    assert all(any(q.startswith(s.description()) for s in scenes) for q in questions)
    # the text-only generator prompts the decoder with no image token and decodes strings
    answers = raw_generate(r.model, r.processor, max_new_tokens=2)(None, questions[:3])
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    image_id = r.model.config.image_token_id
    prompt = r.processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "text", "text": questions[0]}]}],
        add_generation_prompt=True)
    assert image_id not in r.tok(prompt)["input_ids"]
    # the same generator with images prompts through the processor, image tokens included
    seen = []
    hook = r.model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"]),
                                             with_kwargs=True)
    try:
        with_images = raw_generate(r.model, r.processor, max_new_tokens=1)(
            [s.image for s in scenes], ["what colour is it ?"] * 2)
    finally:
        hook.remove()
    assert len(with_images) == 2 and all(isinstance(a, str) for a in with_images)
    assert (seen[0] == image_id).sum() > 0


def test_projector_stage_trains_the_projector_alone_on_descriptions(tiny_specs, tmp_path):
    r = Recipe(_cfg(steps_a=0, steps_b=0, steps_p=3, lr_p=3e-3), tmp_path / "p", progress=False)
    batch, labels, _ = r._qa_batch("P", 0)
    texts = r.tok.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert all(t.count("describe the image") == 1 for t in texts)
    before = _snapshot(r)
    r.run()
    assert _changed(before, r, "multi_modal_projector")
    assert not _changed(before, r, "language_model") and not _changed(before, r, "vision_tower")


def test_tower_from_replaces_stage_a_with_a_trained_members_tower(tiny_specs, tmp_path):
    src = Recipe(_cfg(steps_a=3, steps_b=0), tmp_path / "src", progress=False)
    src.run()
    r = Recipe(_cfg(steps_b=0, tower_from=str(tmp_path / "src")), tmp_path / "dst", progress=False)
    r._loss_a = lambda step: (_ for _ in ()).throw(AssertionError("stage A ran"))
    log = r.run()
    assert log["stages"]["A"]["tower_from"] == str(tmp_path / "src")
    t1, t2 = src.model.model.vision_tower.state_dict(), r.model.model.vision_tower.state_dict()
    assert all(torch.equal(t1[k], t2[k]) for k in t1)
    with pytest.raises(FileNotFoundError, match="no trained model"):
        Recipe(_cfg(tower_from=str(tmp_path / "nowhere")), tmp_path / "x", progress=False).run()


def test_cli_trains_a_named_variant_with_its_options(monkeypatch, tmp_path):
    from vlmscope import cli
    from vlmscope.organism import VARIANTS
    from vlmscope.organism.train import Recipe

    seen = {}

    def fake_run(self, evaluate=None):
        seen["cfg"] = self.cfg
        return {"total_seconds": 0.0}

    monkeypatch.setattr(Recipe, "__init__", lambda self, cfg, out, **kw: setattr(self, "cfg", cfg))
    monkeypatch.setattr(Recipe, "run", fake_run)
    assert cli.main(["organism", "train", "--model", "organism-vit-m8-lm", "--out", str(tmp_path),
                     "--steps-b", "7", "--batch", "16"]) == 0
    cfg = seen["cfg"]
    assert cfg.decoder == "m8" and cfg.system == VARIANTS["organism-vit-m8-lm"]["system"]
    assert (cfg.steps_t, cfg.steps_p, cfg.steps_b, cfg.batch) == (1000, 300, 7, 16)
    assert cli.main(["organism", "train", "--model", "organism-vit-m-lm", "--out", str(tmp_path),
                     "--lr-t", "5e-4"]) == 0
    cfg = seen["cfg"]
    assert (cfg.decoder, cfg.steps_t, cfg.steps_p, cfg.lr_t) == ("m", 1500, 300, 5e-4)
    with pytest.raises(SystemExit):
        cli.main(["organism", "train", "--model", "organism-vit-m-lm", "--out", str(tmp_path),
                  "--lr-t", "0"])
    with pytest.raises(SystemExit, match="organism-vit-m8-lm"):
        cli.main(["organism", "train", "--model", "organism-nope", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown decoder"):
        cli.main(["organism", "train", "--decoder", "xl", "--out", str(tmp_path)])


def test_export_checkpoint_gives_a_loadable_model_of_the_last_checkpoint(tiny_specs, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from vlmscope.organism.train import export_checkpoint

    r = Recipe(_cfg(steps_a=3, steps_b=6, ckpt_every=3), tmp_path / "run", progress=False)
    r.run()
    saved = load_file(tmp_path / "run" / "checkpoint" / "weights.safetensors")
    info = export_checkpoint(tmp_path / "run", tmp_path / "exp")
    assert info["done"] == ["A", "B"]
    m = LlavaForConditionalGeneration.from_pretrained(tmp_path / "exp")
    ours = m.state_dict()
    ref = {k: v for k, v in r.model.state_dict().items()}
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    assert any(k.startswith("heads.") for k in saved)  # probe heads stay out of the model
    assert json.loads((tmp_path / "exp" / "training.json").read_text())["exported_from_checkpoint"]
    with pytest.raises(FileNotFoundError, match="no training checkpoint"):
        export_checkpoint(tmp_path / "nothing", tmp_path / "exp2")
