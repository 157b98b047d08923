"""Loading fails loudly: a checkpoint that does not match the model is an error, not random weights."""

import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vlmscope
from vlmscope.loading import TRANSFORMERS_CEILING, TRANSFORMERS_SPEC
from vlmscope.models import (TRANSFORMERS_FLOOR, ModelLoadError, check_loading_info,
                             check_transformers_version)

ROOT = Path(__file__).resolve().parents[1]


def damaged(tiny_dir, tmp_path, edit):
    """A copy of the tiny model whose safetensors went through ``edit(state_dict)``."""
    out = tmp_path / "model"
    shutil.copytree(tiny_dir, out)
    sd = load_file(out / "model.safetensors")
    edit(sd)
    save_file(sd, out / "model.safetensors", metadata={"format": "pt"})
    return out


def vision_key(sd):
    return next(k for k in sorted(sd) if "vision_tower" in k and k.endswith("q_proj.weight"))


def test_clean_checkpoints_load(tiny_dir):
    vlm = vlmscope.load(tiny_dir)
    assert vlm.adapter.family == "llava"


def test_missing_key_is_named(tiny_dir, tmp_path):
    sd = load_file(Path(tiny_dir) / "model.safetensors")
    key = vision_key(sd)
    path = damaged(tiny_dir, tmp_path, lambda s: s.pop(key))
    with pytest.raises(ModelLoadError, match=r"1 missing from the checkpoint.*" + re.escape(key.split(".", 1)[-1])):
        vlmscope.load(path)


def test_extra_key_is_named(tiny_dir, tmp_path):
    path = damaged(tiny_dir, tmp_path, lambda s: s.__setitem__("model.surplus.weight", torch.zeros(3)))
    with pytest.raises(ModelLoadError, match=r"does not use: .*surplus\.weight"):
        vlmscope.load(path)


def test_mismatched_shape_is_named(tiny_dir, tmp_path):
    sd = load_file(Path(tiny_dir) / "model.safetensors")
    key = vision_key(sd)
    path = damaged(tiny_dir, tmp_path, lambda s: s.__setitem__(key, torch.zeros(s[key].shape[0] + 1, s[key].shape[1])))
    with pytest.raises(ModelLoadError, match=re.escape(key.split(".", 1)[-1])) as err:
        vlmscope.load(path)
    assert "shape" in str(err.value) or "size" in str(err.value)


def test_renamed_keys_like_old_releases_are_caught(tiny_dir, tmp_path):
    """What transformers 5.0-5.5 did to the organism: every vision key unread, every model key random."""
    def rename(s):
        for k in [k for k in s if "vision_tower" in k]:
            s[k.replace("vision_tower", "vision_model_old")] = s.pop(k)

    with pytest.raises(ModelLoadError, match=r"missing from the checkpoint.*does not use"):
        vlmscope.load(damaged(tiny_dir, tmp_path, rename))


def test_tied_weights_and_non_persistent_buffers_are_not_errors(tiny):
    model = tiny.model
    buffers = [f"{m}.{b}" if m else b for m, mod in model.named_modules()
               for b in getattr(mod, "_non_persistent_buffers_set", ())]
    assert buffers, "the tiny model has non-persistent buffers (rotary inv_freq)"
    check_loading_info({"missing_keys": set(buffers), "unexpected_keys": set(), "mismatched_keys": set(),
                        "error_msgs": []}, "tiny", model)
    model.all_tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    try:
        check_loading_info({"missing_keys": {"lm_head.weight"}}, "tiny", model)
    finally:
        del model.all_tied_weights_keys
    with pytest.raises(ModelLoadError, match="lm_head.weight"):
        check_loading_info({"missing_keys": {"lm_head.weight"}}, "tiny", model)


def test_many_keys_are_summarised():
    info = {"missing_keys": {f"layer.{i}.weight" for i in range(30)}}
    with pytest.raises(ModelLoadError, match=r"30 missing.*\(30 in all\)"):
        check_loading_info(info, "x")


def test_version_floor_and_ceiling():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say inside the tested range
        for v in (TRANSFORMERS_FLOOR, "5.24.0", TRANSFORMERS_CEILING, TRANSFORMERS_CEILING + ".dev0"):
            check_transformers_version(v)
        check_transformers_version()  # the installed release is inside the declared range
    for old in ("5.5.4", "5.0.0", "4.57.1"):
        with pytest.raises(ModelLoadError, match=rf"transformers {re.escape(old)} is older than"):
            check_transformers_version(old)
    for new in ("5.26.0", "5.30.1", "6.0.0"):  # pip refuses these; a forced install is warned of
        with pytest.warns(RuntimeWarning, match=rf"transformers {re.escape(new)} is newer than "
                                                 rf"{re.escape(TRANSFORMERS_CEILING)}"):
            check_transformers_version(new)


def test_the_installed_transformers_is_inside_the_declared_range():
    """The suite runs on what it declares: CI's `make test` installs the newest release allowed,
    which must be the ceiling the suite was last run on (a newer one means raise the cap after
    running the suite on it, not before)."""
    import transformers
    from packaging.specifiers import SpecifierSet

    assert transformers.__version__ in SpecifierSet(TRANSFORMERS_SPEC), transformers.__version__
    assert TRANSFORMERS_FLOOR in SpecifierSet(TRANSFORMERS_SPEC)
    assert TRANSFORMERS_CEILING in SpecifierSet(TRANSFORMERS_SPEC)
    floor, cap = TRANSFORMERS_SPEC.split(",")
    assert floor == f">={TRANSFORMERS_FLOOR}"
    # the cap is the minor release after the ceiling: every patch of the ceiling's minor is allowed
    major, minor = TRANSFORMERS_CEILING.split(".")[:2]
    assert cap == f"<{major}.{int(minor) + 1}"


def test_floor_is_the_declared_one():
    for f in ("pyproject.toml", "environment.yml"):
        assert f"transformers{TRANSFORMERS_SPEC}" in (ROOT / f).read_text(), f


def test_load_draws_no_weight_loading_bar_unless_asked_and_restores_the_setting(capfd):
    import transformers.utils.logging as tlog

    import vlmscope

    assert tlog.is_progress_bar_enabled()
    vlmscope.load("organism-vit-s")
    quiet = capfd.readouterr().err
    assert "Loading weights" not in quiet and "%|" not in quiet, quiet
    assert tlog.is_progress_bar_enabled()  # long loops keep their bars
    vlmscope.load("organism-vit-s", progress=True)  # asked for: the bar is there
    assert "Loading weights" in capfd.readouterr().err
