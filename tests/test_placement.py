"""Models the user brings: device maps, ``wrap``, and every analysis giving the plain load's numbers.

On CPU the device maps place everything on the CPU, so these tests check that
the pass-through, the no-move rule and the input-device routing work and
change no number; a map over several GPUs takes the same code paths with
tensors that stay where their layer lives.
"""

import numpy as np
import pytest
import torch

import vlmscope
from vlmscope import heatmaps as H
from vlmscope.ablation import ablated, image_embedding_norms
from vlmscope.datasets.synthetic import World
from vlmscope.knockout import SweepConfig, knockout_sweep
from vlmscope.lens import image_lens
from vlmscope.maps import record_generation


def per_module_map(path):
    """Every part named explicitly: vision tower, projector, embeddings, each decoder layer, norm, head."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    n = cfg.text_config.num_hidden_layers
    parts = ["model.vision_tower", "model.multi_modal_projector", "model.language_model.embed_tokens",
             *[f"model.language_model.layers.{i}" for i in range(n)], "model.language_model.norm",
             "model.language_model.rotary_emb", "lm_head"]
    return {p: "cpu" for p in parts}


@pytest.fixture(scope="module")
def scene():
    return World().scene(seed=3, n_objects=2)


@pytest.fixture(scope="module")
def vlms():
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = vlmscope.organisms()["organism"]
    own = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    return {"plain": vlmscope.load("organism", device="cpu"),
            "map_all": vlmscope.load("organism", device_map={"": "cpu"}),
            "map_modules": vlmscope.load("organism", device_map=per_module_map(path)),
            "wrap": vlmscope.wrap(own, AutoProcessor.from_pretrained(path), name="mine")}


def results(vlm, scene):
    """Every analysis once, small."""
    obj = scene.objects[0]
    p = vlm.prepare(scene.image, f"what color is the {obj.shape} ?")
    gen = vlm.generate(p, max_new_tokens=4)
    out = {"input_ids": p.input_ids.cpu().numpy(), "answer": gen.text,
           "score": vlm.score(p, obj.color).logprobs.numpy()}
    rec = record_generation(vlm, scene.image, max_new_tokens=3)
    out["fractions"] = rec.recorder.fraction_tensor().numpy()
    out["maps"] = rec.recorder.image_maps().numpy()
    ko = knockout_sweep(vlm, scene.image, SweepConfig(configs=("img->gen",), starts=(0, 2), max_new_tokens=4))
    out["knockout"] = ko[["config", "start", "text", "baseline"]].astype(str).values.tolist()
    lens = image_lens(vlm, p, k=2, words=[obj.color])
    out["lens"] = lens.word_logprobs
    out["lens_share"] = lens.share(p.geometry.tokens_for_mask(obj.mask), [obj.color])
    out["norms"] = image_embedding_norms(vlm, p)
    with ablated(vlm, p, p.geometry.tokens_for_mask(obj.mask), mode="zeros"):
        out["ablated"] = vlm.generate(p, max_new_tokens=4).text
    ids = vlm.answer_ids(obj.color, p)
    sel = H.select_tokens(vlm, p, ids, positions=[0])
    hm = H.igos(vlm, p, ids, H.HeatmapConfig(size=4, iterations=1, ig_iter=2, batch=2), selection=sel)
    out["igos"] = hm.mask
    return out


@pytest.fixture(scope="module")
def reference(vlms, scene):
    return results(vlms["plain"], scene)


@pytest.mark.parametrize("which", ["map_all", "map_modules", "wrap"])
def test_every_analysis_matches_the_plain_load(vlms, scene, reference, which):
    got = results(vlms[which], scene)
    assert got.keys() == reference.keys()
    for k, ref in reference.items():
        if isinstance(ref, np.ndarray):
            np.testing.assert_allclose(got[k], ref, rtol=1e-5, atol=1e-5, err_msg=k)
        else:
            assert got[k] == ref, k


def test_results_come_back_on_the_cpu_and_inputs_go_to_the_embedding(vlms, scene):
    vlm = vlms["map_modules"]
    assert vlm.input_device == vlm.model.get_input_embeddings().weight.device == vlm.device
    p = vlm.prepare(scene.image, "describe the image .")
    assert all(v.device == vlm.input_device for v in p.inputs.values() if torch.is_tensor(v))
    assert vlm.score(p, "red").logprobs.device.type == "cpu"


def test_load_passes_options_through_and_does_not_move_a_placed_model(monkeypatch):
    import transformers

    seen = {}
    real = transformers.AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **{k: v for k, v in kwargs.items() if k != "quantization_config"})

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", spy)
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append(a) or self)
    marker = object()
    vlmscope.load("organism", device_map={"": "cpu"}, revision="main", quantization_config=marker,
                  dtype=torch.float32)
    assert seen["device_map"] == {"": "cpu"} and seen["quantization_config"] is marker
    assert seen["revision"] == "main" and seen["dtype"] is torch.float32
    assert seen["output_loading_info"] is True
    assert moved == []


def test_bad_combinations():
    with pytest.raises(ValueError, match="device or device_map"):
        vlmscope.load("organism", device="cpu", device_map="auto")
    with pytest.raises(TypeError, match="PreTrainedModel"):
        vlmscope.wrap(torch.nn.Linear(2, 2), None)


def test_wrap_keeps_the_users_model(vlms):
    vlm = vlms["wrap"]
    assert vlm.name == "mine" and vlm.adapter.family == "llava" and not vlm.model.training
