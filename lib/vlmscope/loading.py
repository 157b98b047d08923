"""Finding and loading a checkpoint: the steps of ``vlmscope.load`` before a ``VLM`` exists.

``load_checkpoint`` resolves a bundled organism name, a local folder or a hub
id, refuses a transformers older than ``TRANSFORMERS_FLOOR``, reads the
config first (so an unsupported architecture fails before any weight
loads), then loads the processor and the model and refuses any missing,
unexpected or mismatched weight (``check_loading_info``). ``vlmscope.load``
(``models.py``) wraps what it returns in a ``VLM``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import torch

from .adapters import adapter_class_for


class ModelLoadError(ValueError):
    """The model could not be found or loaded."""


def data_dir() -> Path:
    """Where bundled data lives: ``$VLMSCOPE_DATA`` or the repository's ``data/``."""
    env = os.environ.get("VLMSCOPE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "data"


DEFAULT_ORGANISM = "organism-vit-m"


def organisms() -> dict[str, Path]:
    """Bundled organisms by name (``organism`` is the default zoo member)."""
    root = data_dir() / "organism"
    found = {p.name: p for p in sorted(root.glob("organism-*")) if (p / "config.json").exists()}
    if DEFAULT_ORGANISM in found:
        found["organism"] = found[DEFAULT_ORGANISM]
    return found


# ------------------------------------------------------------------------- load
def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# The oldest and the newest transformers the whole suite has passed on; pyproject.toml declares
# ">=FLOOR,<next minor after CEILING" (TRANSFORMERS_SPEC). A release outside it is untested:
# 5.25.0, for one, changed what InternVL's processor counts as image tokens.
TRANSFORMERS_FLOOR = "5.23.0"
TRANSFORMERS_CEILING = "5.25.0"
TRANSFORMERS_SPEC = ">=5.23.0,<5.26"


def check_transformers_version(version: str | None = None) -> None:
    """``ModelLoadError`` for a transformers older than ``TRANSFORMERS_FLOOR``; a warning for one
    newer than ``TRANSFORMERS_CEILING`` (pip refuses it, but a user can force it).

    5.0.0-5.5.4 load the organism with a random vision tower (their key
    renaming misses its checkpoint names) and say so only in a log; up to
    5.22 processors lack the ``images_kwargs`` defaults the Gemma 3 and
    InternVL adapters are tested through, and 5.6's Idefics3 / SmolVLM image
    processors need torchvision.
    """
    import re

    import transformers

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:3])

    have = version or transformers.__version__
    if parts(have) < parts(TRANSFORMERS_FLOOR):
        raise ModelLoadError(
            f"transformers {have} is older than {TRANSFORMERS_FLOOR}, the oldest release vlmscope is "
            f"tested on (5.0-5.5 load some checkpoints with random weights, later ones fail "
            f"parts of the test suite); "
            f"upgrade with: pip install 'transformers{TRANSFORMERS_SPEC}'")
    if parts(have)[:2] > parts(TRANSFORMERS_CEILING)[:2]:
        import warnings
        warnings.warn(
            f"transformers {have} is newer than {TRANSFORMERS_CEILING}, the newest release vlmscope's "
            f"tests have run on; a processor or model class may have changed under it (check "
            f"`python -m vlmscope models --selftest` and the test suite), or install "
            f"'transformers{TRANSFORMERS_SPEC}'", RuntimeWarning, stacklevel=3)


def _expected_absent(model) -> set[str]:
    """Keys transformers itself expects to be absent: tied weights and non-persistent buffers."""
    keys = set(getattr(model, "all_tied_weights_keys", None) or {})
    for mod_name, module in model.named_modules():
        for b in getattr(module, "_non_persistent_buffers_set", ()):
            keys.add(f"{mod_name}.{b}" if mod_name else b)
    return keys


def check_loading_info(info: dict, name: str, model=None) -> None:
    """``ModelLoadError`` naming every missing, unexpected or mismatched weight in ``info``.

    ``info`` is what ``from_pretrained(..., output_loading_info=True)`` returns;
    transformers has already removed the keys its model class declares
    optional. Tied weights and non-persistent buffers are not counted either.
    """
    absent_ok = _expected_absent(model) if model is not None else set()
    missing = sorted(set(info.get("missing_keys") or ()) - absent_ok)
    unexpected = sorted(set(info.get("unexpected_keys") or ()))
    mismatched = sorted(info.get("mismatched_keys") or (), key=str)
    errors = [str(e) for e in info.get("error_msgs") or ()]
    if not (missing or unexpected or mismatched or errors):
        return

    def some(keys, n=8):
        shown = ", ".join(str(k) for k in keys[:n])
        return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing from the checkpoint (they would be random): {some(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} in the checkpoint that the model does not use: {some(unexpected)}")
    if mismatched:
        shown = [f"{k} (checkpoint {tuple(a)}, model {tuple(b)})" if isinstance(k, str) else str(k)
                 for k, a, b in (m if len(m) == 3 else (m, (), ()) for m in mismatched)]
        parts.append(f"{len(mismatched)} with another shape: {some(shown)}")
    if errors:
        parts.append("errors: " + "; ".join(errors[:3]))
    raise ModelLoadError(
        f"{name!r} did not load cleanly; " + "; ".join(parts) + ". The checkpoint does not match "
        f"this transformers release ({_transformers_version()}) or is damaged; analysing it would "
        "analyse random weights")


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


@contextmanager
def quiet_progress(quiet: bool = True):
    """Within the block, no transformers / hub progress bar (e.g. "Loading weights 100%").

    Only the bars are silenced: warnings, logs and errors still reach the user,
    and the previous setting is restored on the way out (so a long loop's
    bar, e.g. ``runner.run``'s, stays). ``quiet=False`` changes nothing.
    """
    from huggingface_hub import utils as hub
    from transformers.utils import logging as tlog

    bars, hub_bars = tlog.is_progress_bar_enabled(), not hub.are_progress_bars_disabled()
    if quiet and bars:
        tlog.disable_progress_bar()  # transformers' bars, and the hub's with them
    elif quiet and hub_bars:
        hub.disable_progress_bars()
    try:
        yield
    finally:
        if quiet and bars:
            tlog.enable_progress_bar()
            if not hub_bars:
                hub.disable_progress_bars()
        elif quiet and hub_bars:
            hub.enable_progress_bars()


def load_checkpoint(model: str | os.PathLike, *, device=None, dtype=None, device_map=None,
                    attn_implementation: str = "eager", trust_remote_code: bool = False,
                    revision: str | None = None, quantization_config=None, progress: bool = False,
                    **kwargs):
    """``(model, processor, adapter class, name)`` of a checkpoint; see ``vlmscope.load``.

    The model is in eval mode, on ``device`` unless ``device_map`` or
    ``quantization_config`` placed it. ``progress``: show transformers' weight-loading
    bar (off by default: a notebook's setup cell stays quiet; warnings still show).
    """
    from safetensors import SafetensorError  # a damaged weights file (e.g. truncated)
    from transformers import AutoConfig, AutoModelForImageTextToText

    check_transformers_version()
    if device is not None and device_map is not None:
        raise ValueError("pass device or device_map, not both (device_map places the model itself)")
    name = str(model)
    bundled = organisms()
    if name in bundled:
        source = bundled[name]
    elif name.startswith("organism"):
        raise ModelLoadError(
            f"no bundled organism named {name!r}; bundled: {', '.join(bundled) or 'none'} "
            f"(looked in {data_dir() / 'organism'})")
    else:
        source = Path(name).expanduser()
        if source.exists():
            if not source.is_dir() or not (source / "config.json").exists():
                raise ModelLoadError(f"{source} is not a model directory (it has no config.json)")
        elif name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
            raise ModelLoadError(f"no model directory at {source}")
        else:
            source = name  # a hub id
    common = dict(trust_remote_code=trust_remote_code, revision=revision)
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(f"could not read a model config from {name!r}: {e}") from None
    adapter_cls = adapter_class_for(config)  # raises UnsupportedArchitecture
    placed = device_map is not None or quantization_config is not None
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device if device_map is None else _map_device(device_map))
    extra = dict(kwargs)
    # mismatched shapes are collected in the loading info (and raised below with every other
    # problem) instead of transformers' error that only points at a log
    extra.setdefault("ignore_mismatched_sizes", True)
    if device_map is not None:
        extra["device_map"] = device_map
    if quantization_config is not None:
        extra["quantization_config"] = quantization_config
    try:
        with quiet_progress(not progress):
            processor = adapter_cls.load_processor(source, **common)
            net, info = AutoModelForImageTextToText.from_pretrained(
                source, config=config, dtype=dtype, attn_implementation=attn_implementation,
                use_safetensors=extra.pop("use_safetensors", True), output_loading_info=True,
                **common, **extra)
    except (OSError, ValueError, RuntimeError, ImportError, SafetensorError) as e:  # ImportError: e.g. no accelerate
        raise ModelLoadError(f"could not load {name!r}: {e}") from None
    check_loading_info(info, name, net)
    if not placed:
        net.to(device)
    net.eval()
    return net, processor, adapter_cls, name


def _map_device(device_map) -> torch.device:
    """The device a ``device_map`` puts most of the model on, for the default dtype."""
    if isinstance(device_map, dict):
        devs = [torch.device(f"cuda:{d}" if isinstance(d, int) else d) for d in device_map.values()
                if str(d) not in ("disk", "meta")]
        return torch.device("cuda") if any(d.type == "cuda" for d in devs) else torch.device("cpu")
    if isinstance(device_map, str) and device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
        return torch.device(device_map)
    return default_device()


__all__ = ["load_checkpoint", "ModelLoadError", "organisms", "data_dir", "DEFAULT_ORGANISM",
           "TRANSFORMERS_FLOOR", "TRANSFORMERS_CEILING", "TRANSFORMERS_SPEC",
           "check_transformers_version", "check_loading_info",
           "default_device", "default_dtype", "quiet_progress"]
