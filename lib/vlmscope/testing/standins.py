"""Random-weight stand-ins of the real checkpoints, at their real image geometry.

A stand-in keeps everything of a real checkpoint that decides WHERE image
tokens come from and HOW MANY there are -- image size, patch size, tiling /
anyres grids, pooling, merge and pixel-shuffle factors, min/max pixels, the
chat template's shape, the special tokens and the attention pattern (Gemma 3
and PaliGemma's bidirectional image blocks, Qwen2.5-VL's windows, Gemma's
sliding layers) -- and cuts depth and width (1-2 layers per tower, width
32-64) so one forward pass takes seconds on a CPU. The tokenizer is of the
real kind, trained here (``vlmscope.testing.tokenizers``): SentencePiece-
style (``▁``, byte fallback) for the Llama / Mistral / Gemma decoders,
byte-level BPE (``Ġ``) for Qwen2, Llama 3 and SmolLM decoders. Its
vocabulary is small, so the model's vocabulary is too (``len(tokenizer)``).

One function per family gives a stand-in's configuration
(``testing.standin_configs``); this module registers, builds and caches
them. The numbers below were copied from the public ``config.json`` and
``preprocessor_config.json`` of each mirrored checkpoint (and the image
processor defaults of transformers 5 where the checkpoint does not set them).
"Tokens" is what a 640x480 photo gives (computed by the real processor class
with these settings; ``tests/test_standins.py`` checks the count against an
independent calculation from the same rules):

=========================  =====================================  ========  =====  ============================================  ================
stand-in                   mirrors                                image     patch  layout                                        tokens (640x480)
=========================  =====================================  ========  =====  ============================================  ================
standin-llava-1.5          llava-hf/llava-1.5-7b-hf               336       14     CLIP 24x24, CLS dropped, layer -2             576
standin-llava-next         llava-hf/llava-v1.6-mistral-7b-hf      336       14     base + anyres tiles (5 pinpoints to 672)      2340
standin-llava-onevision    llava-hf/llava-onevision-qwen2-0.5b-ov 384       14     SigLIP 27x27, anyres 36 pinpoints, max 9      2929
standin-qwen2-vl           Qwen/Qwen2-VL-7B-Instruct              dynamic   14     merge 2x2, 3136..12845056 px                  391
standin-qwen2.5-vl         Qwen/Qwen2.5-VL-7B-Instruct            dynamic   14     merge 2x2, 112 px windows                     391
standin-internvl3          OpenGVLab/InternVL3-1B-hf              448       14     1..12 tiles + thumbnail, pixel shuffle 0.5    3328
standin-idefics3           HuggingFaceM4/Idefics3-8B-Llama3       364       14     longest 1456, 364 tiles + global, shuffle 2   2197
standin-smolvlm            HuggingFaceTB/SmolVLM-256M-Instruct    512       16     longest 2048, 512 tiles + global, shuffle 4   832
standin-gemma3             google/gemma-3-4b-it                   896       14     64x64 patches pooled 4x4                      256
standin-paligemma          google/paligemma2-3b-mix-224           224       14     16x16 patches                                 256
=========================  =====================================  ========  =====  ============================================  ================

``docs/models.md`` lists the cut widths and depths (``SHAPES``, checked
against ``standin_shapes()`` by the tests) and which checks ran on which
stand-in. ``full_size=True`` (LLaVA-1.5 and Qwen2-VL only) keeps the
real widths, depths and vocabulary sizes too: that is the GPU rehearsal's
7B model (``benchmarks/gpu_check.py``), never built in the tests.

>>> from vlmscope.testing.standins import standin_path   # doctest: +SKIP
>>> vlm = vlmscope.load(standin_path("standin-qwen2-vl"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import standin_configs, templates, tiny, tokenizers
from .standin_configs import (_gemma3, _internvl, _llava15, _llava_next, _onevision, _paligemma,
                              _qwen, _tiled)
from .tiny import localize_qwen


def _rand_proj(model, name: str, std: float = 0.02) -> None:
    """Re-initialise a parameter that a family initialises to zeros (image would be ignored)."""
    param = model.get_parameter(name)
    with torch.no_grad():
        param.normal_(std=std)


@dataclass(frozen=True)
class Standin:
    """One stand-in: its family (adapter), the checkpoint it mirrors, its tokenizer kind."""

    name: str
    family: str
    mirrors: str
    tokenizer: str
    builder: Callable
    full_size: bool = False  # whether full_size=True is available
    # the selftest's picture and painted boxes where the adapter's own (made for its tiny
    # model) do not suit the real geometry; None = the adapter's
    selftest_image_size: tuple[int, int] | None = None
    selftest_boxes: tuple[tuple[int, int, int, int], ...] | None = None


STANDINS: dict[str, Standin] = {s.name: s for s in (
    Standin("standin-llava-1.5", "llava", "llava-hf/llava-1.5-7b-hf", "sentencepiece", _llava15, True),
    Standin("standin-llava-next", "llava-next", "llava-hf/llava-v1.6-mistral-7b-hf", "sentencepiece",
            _llava_next),
    Standin("standin-llava-onevision", "llava-onevision", "llava-hf/llava-onevision-qwen2-0.5b-ov-hf",
            "bytelevel", _onevision),
    Standin("standin-qwen2-vl", "qwen2-vl", "Qwen/Qwen2-VL-7B-Instruct", "bytelevel",
            lambda p, local=False, full_size=False: _qwen("qwen2-vl", local, full_size), True),
    Standin("standin-qwen2.5-vl", "qwen2.5-vl", "Qwen/Qwen2.5-VL-7B-Instruct", "bytelevel",
            lambda p, local=False, full_size=False: _qwen("qwen2.5-vl", local, full_size)),
    Standin("standin-internvl3", "internvl", "OpenGVLab/InternVL3-1B-hf", "bytelevel", _internvl),
    # Idefics3 / SmolVLM: a small picture is enlarged ~15x with LANCZOS (3 source pixels of
    # support, more than the locality check's 2 px margin); at the canvas size itself the
    # tiles are exact crops, and the boxes keep >= 14 px from the global view's token edges
    # (112 x 84 px, 256 x 192 px), which the global view's downscaling blurs across.
    Standin("standin-idefics3", "idefics3", "HuggingFaceM4/Idefics3-8B-Llama3", "bytelevel",
            lambda p, local=False, full_size=False: _tiled("idefics3", local, full_size),
            selftest_image_size=(1456, 1092),
            selftest_boxes=((30, 20, 80, 60), (350, 100, 380, 150), (600, 350, 650, 400))),
    Standin("standin-smolvlm", "smolvlm", "HuggingFaceTB/SmolVLM-256M-Instruct", "bytelevel",
            lambda p, local=False, full_size=False: _tiled("smolvlm", local, full_size),
            selftest_image_size=(2048, 1536),
            selftest_boxes=((60, 40, 180, 150), (480, 40, 560, 150), (300, 480, 420, 560))),
    Standin("standin-gemma3", "gemma3", "google/gemma-3-4b-it", "sentencepiece", _gemma3),
    Standin("standin-paligemma", "paligemma", "google/paligemma2-3b-mix-224", "sentencepiece",
            _paligemma),
)}
BY_FAMILY: dict[str, str] = {s.family: s.name for s in STANDINS.values()}


def standin(name_or_family: str) -> Standin:
    """The stand-in called ``name_or_family`` (``standin-qwen2-vl``) or of that family (``qwen2-vl``)."""
    key = BY_FAMILY.get(name_or_family, name_or_family)
    if key not in STANDINS:
        raise KeyError(f"no stand-in {name_or_family!r}; known: {', '.join(STANDINS)} "
                       f"(or a family: {', '.join(BY_FAMILY)})")
    return STANDINS[key]


def standin_config(name_or_family: str, *, local: bool = False, full_size: bool = False):
    """``(config, model class name, processor, extras)`` without building any weights."""
    s = standin(name_or_family)
    if full_size and not s.full_size:
        raise ValueError(f"{s.name} has no full-size configuration (only "
                         f"{', '.join(n for n, t in STANDINS.items() if t.full_size)})")
    return s.builder(None, local=local, full_size=full_size)


def build_standin(name_or_family: str, path, *, local: bool = False, seed: int = 0,
                  dtype: torch.dtype | None = None) -> Path:
    """Save the random-weight stand-in (model + processor) to ``path``; return ``path``.

    ``local=True`` builds the variant the selftest's locality check needs
    (the vision side reads its patch embeddings, so patches do not mix).
    """
    import transformers

    torch.manual_seed(seed)
    cfg, cls_name, proc, extra = standin_config(name_or_family, local=local)
    model = getattr(transformers, cls_name)(cfg)
    for name in extra.get("reinit", ()):
        _rand_proj(model, name)
    if extra.get("localize"):
        localize_qwen(extra["localize"], model)
    if "eos" in extra:
        model.generation_config.eos_token_id = extra["eos"]
    if "pad" in extra:
        model.generation_config.pad_token_id = extra["pad"]
    if dtype is not None:
        model = model.to(dtype)
    path = Path(path)
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


# what standin_shapes() gives (docs/models.md; tests/test_standins.py checks they agree)
SHAPE_COLUMNS = ("stand-in", "mirrors", "image", "patch", "tokens (640x480)",
                 "vision layers x width", "text layers x width", "tokenizer", "vocab")
SHAPES = [
    ('standin-llava-1.5', 'llava-hf/llava-1.5-7b-hf', '336 px', 14, 576, '2 x 32', '2 x 64', 'sentencepiece', 1200),
    ('standin-llava-next', 'llava-hf/llava-v1.6-mistral-7b-hf', '336 px', 14, 2340, '2 x 32', '2 x 64', 'sentencepiece', 1200),
    ('standin-llava-onevision', 'llava-hf/llava-onevision-qwen2-0.5b-ov-hf', '384 px', 14, 2929, '2 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-qwen2-vl', 'Qwen/Qwen2-VL-7B-Instruct', 'dynamic', 14, 391, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-qwen2.5-vl', 'Qwen/Qwen2.5-VL-7B-Instruct', 'dynamic', 14, 391, '2 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-internvl3', 'OpenGVLab/InternVL3-1B-hf', '448 px', 14, 3328, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-idefics3', 'HuggingFaceM4/Idefics3-8B-Llama3', '364 px', 14, 2197, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-smolvlm', 'HuggingFaceTB/SmolVLM-256M-Instruct', '512 px', 16, 832, '1 x 32', '2 x 64', 'bytelevel', 1200),
    ('standin-gemma3', 'google/gemma-3-4b-it', '896 px', 14, 256, '1 x 32', '2 x 64', 'sentencepiece', 1200),
    ('standin-paligemma', 'google/paligemma2-3b-mix-224', '224 px', 14, 256, '1 x 32', '2 x 64', 'sentencepiece', 2352),
]


def _tokens_for(proc, image_token: str, size) -> int:
    """Image tokens ``proc`` writes for one plain picture of ``size`` (width, height)."""
    from PIL import Image

    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "what is this ?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    ids = proc(text=text, images=Image.new("RGB", size, (128, 128, 128)), return_tensors="pt")["input_ids"]
    return int((ids == proc.tokenizer.convert_tokens_to_ids(image_token)).sum())


def standin_shapes(size=(640, 480)) -> list[dict]:
    """Per stand-in: tower image size and patch, image tokens for a ``size`` picture, layers,
    widths, tokenizer kind and vocabulary size (``docs/models.md``). Builds no weights."""
    rows = []
    for s in STANDINS.values():
        cfg, _, proc, _ = standin_config(s.name)
        text = getattr(cfg, "text_config", cfg)
        vision = cfg.vision_config
        image_token = proc.tokenizer.convert_ids_to_tokens(
            int(getattr(cfg, "image_token_id", None) or cfg.image_token_index))
        side = getattr(vision, "image_size", None)
        side = int(side[0] if isinstance(side, (list, tuple)) else side) if side else None
        patch = vision.patch_size
        rows.append({
            "stand-in": s.name, "mirrors": s.mirrors,
            "image": f"{side} px" if side else "dynamic",
            "patch": int(patch[0] if isinstance(patch, (list, tuple)) else patch),
            f"tokens ({size[0]}x{size[1]})": _tokens_for(proc, image_token, size),
            "vision layers x width": f"{getattr(vision, 'num_hidden_layers', None) if getattr(vision, 'num_hidden_layers', None) is not None else vision.depth} x "
                                     f"{getattr(vision, 'embed_dim', None) or vision.hidden_size}",
            "text layers x width": f"{text.num_hidden_layers} x {text.hidden_size}",
            "tokenizer": s.tokenizer, "vocab": len(proc.tokenizer)})
    return rows


def _fingerprint() -> str:
    """Changes whenever the stand-ins' code (this module, their configurations, templates,
    tiny-model helpers, the tokenizer trainer) or transformers changes.

    The sources are hashed as they were when imported, so a process running
    older code never files its builds under the newer code's name.
    """
    import transformers

    h = hashlib.sha256(transformers.__version__.encode())
    h.update(_SOURCES)
    return h.hexdigest()[:12]


def _read_sources() -> bytes:
    modules = (inspect.getmodule(_read_sources), standin_configs, templates, tiny, tokenizers)
    return b"".join(Path(m.__file__).read_bytes() for m in modules)


_SOURCES = _read_sources()


def default_cache_dir() -> Path:
    """``$VLMSCOPE_STANDIN_CACHE``, else ``<tmp>/vlmscope-standins``."""
    env = os.environ.get("VLMSCOPE_STANDIN_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "vlmscope-standins"


def standin_path(name_or_family: str, cache_dir=None, *, local: bool = False) -> Path:
    """The stand-in's checkpoint folder in ``cache_dir``, built on first use.

    Built into a temporary folder and renamed into place, so a crash never
    leaves half a checkpoint; a code change gives a new folder.
    """
    s = standin(name_or_family)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{s.name}{'-local' if local else ''}-{_fingerprint()}"
    if (path / "config.json").exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{s.name}-"))
    try:
        build_standin(s.name, tmp, local=local)
        try:
            tmp.rename(path)
        except OSError:  # another process got there first
            if not (path / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


__all__ = ["STANDINS", "BY_FAMILY", "Standin", "standin", "standin_config", "build_standin",
           "standin_path", "standin_shapes", "SHAPES", "SHAPE_COLUMNS", "default_cache_dir"]
