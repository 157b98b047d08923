"""Family self-tests on tiny random-weight models: the checks behind ``models --selftest``.

``testing.tiny.build_tiny(family, path, local=False)`` saves a tiny random
checkpoint of each family (model + processor) with ``save_pretrained``.
``local=True`` configures the vision side so that no information mixes
across patches (e.g. read the tower at its patch embeddings), which lets
``check_locality`` verify the token boxes through the real processor and
model: painting a square changes exactly the image tokens whose boxes cover
it.

``run_selftest(..., standin=True)`` (``models --selftest --standins``) runs
the same checks on the family's stand-in at the real checkpoint's geometry
and tokenizer kind (``vlmscope.testing.standins``) instead.

``models_markdown()`` writes ``docs/models.md`` (``python -m vlmscope models
--markdown``): the capability matrix whose every "yes" these checks back, the
stand-ins, and each family's quirks.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..adapters import capability_matrix, supported_families
from ..adapters.base import _REGISTRY, CAPABILITIES
from ..hooks import capture_lm_inputs, hooked


@dataclass
class SelftestResult:
    family: str
    passed: bool
    checks: dict = field(default_factory=dict)  # name -> "ok" | "skipped: why" | "FAILED: why"
    seconds: float = 0.0
    device: str = "cpu"
    model: str = "tiny"  # "tiny" (``testing.tiny``) or a stand-in's name


def image_token_embeddings(vlm, prepared) -> torch.Tensor:
    """``[n_image, d]`` language-model input embeddings at the image positions."""
    with capture_lm_inputs(vlm) as seen, torch.no_grad():
        vlm.model(**prepared.inputs)
    return seen[0][0, prepared.groups.image.to(seen[0].device)].float().cpu()


def check_locality(vlm, image: Image.Image, box, question: str = "what is this ?"):
    """Tokens whose embeddings change when ``box`` is painted, and tokens whose boxes cover it.

    Returns ``(changed, covering, near)``: ``near`` are tokens overlapping the
    box grown by 2 px (resampling blurs a pixel or so across edges).
    """
    x0, y0, x1, y1 = box
    painted = np.asarray(image).copy()
    painted[y0:y1, x0:x1] = (255, 0, 255)
    a = vlm.prepare(image, question)
    b = vlm.prepare(Image.fromarray(painted), question)
    diff = (image_token_embeddings(vlm, a) - image_token_embeddings(vlm, b)).abs().amax(-1)
    mask = np.zeros(image.size[::-1], bool)
    mask[y0:y1, x0:x1] = True
    grown = np.zeros_like(mask)
    grown[max(y0 - 2, 0):y1 + 2, max(x0 - 2, 0):x1 + 2] = True
    geo = a.geometry
    covering = set(geo.tokens_for_mask(mask, view=None, allow_empty=True).tolist())
    near = set(geo.tokens_for_mask(grown, view=None, allow_empty=True).tolist())
    changed = set(np.nonzero(diff.numpy() > 1e-5)[0].tolist())
    return changed, covering, near


def check_lens(vlm, prepared):
    """Final norm + unembedding of the last layer's output equals the model's logits."""
    out = {}

    def grab(module, args, kwargs, output):
        out["h"] = (output[0] if isinstance(output, tuple) else output).detach()

    with hooked(vlm.adapter.layers[-1], grab), torch.no_grad():
        logits = vlm.model(**prepared.inputs).logits
    lens = vlm.adapter.lens(out["h"])
    assert torch.allclose(lens.float(), logits.float(), atol=1e-4, rtol=1e-4), \
        f"lens differs from logits by {(lens - logits).abs().max():.3g}"


def check_pixel_gradients(vlm, prepared):
    """d(log-prob of the argmax next token)/d(pixels) is finite and not all zero."""
    inputs = dict(prepared.inputs)
    px = inputs["pixel_values"].detach().clone().float().requires_grad_(True)
    inputs["pixel_values"] = px.to(prepared.inputs["pixel_values"].dtype)
    logits = vlm.model(**inputs).logits[0, -1].float()
    torch.log_softmax(logits, -1).max().backward()
    g = px.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, "no pixel gradient"


def smooth_image(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth random picture (a coarse random grid, bilinearly enlarged)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(30, 225, (4, 4, 3), dtype=np.uint8))
    return coarse.resize((width, height), Image.BILINEAR)


def check_image_gradients(vlm, size, question: str = "what is this ?"):
    """The adapter's differentiable preprocessing matches the processor and carries gradients.

    On a smooth picture of ``size = (width, height)``, ``pixel_inputs`` must
    reproduce the processor's pixel tensors (mean error under 0.01 and max
    under 0.1 in normalised units; the PIL backend rounds to uint8 after
    resizing, which on pure noise alone moves single values by ~0.2), and the
    log-probability of the argmax next token must have a finite, non-zero
    gradient in the ORIGINAL pixels.
    """
    from ..attention import attention_implementation
    from ..pixels import image_tensor

    image = smooth_image(*size)
    prepared = vlm.prepare(image, question)
    try:
        x = image_tensor(image, vlm.device).requires_grad_(True)
        got = vlm.adapter.pixel_inputs(x, prepared.inputs)
    except NotImplementedError as e:
        return f"skipped: {e}"
    assert got, "pixel_inputs returned nothing"
    for k, v in got.items():
        ref = prepared.inputs[k]
        assert tuple(v.shape) == tuple(ref.shape), f"{k}: shape {tuple(v.shape)} != {tuple(ref.shape)}"
        err = (v.detach().float() - ref.float()).abs()
        assert err.mean() < 0.01 and err.max() < 0.1, \
            f"{k}: differs from the processor by mean {err.mean():.3g}, max {err.max():.3g}"
    logits = vlm.model(**{**prepared.inputs, **got}).logits[0, -1].float()
    torch.log_softmax(logits, -1).max().backward()
    g = x.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, "no image gradient"
    # heatmaps optimise on SDPA kernels (HeatmapConfig.attn_implementation): same numbers
    with torch.no_grad(), attention_implementation(vlm.model, "sdpa"):
        fast = vlm.model(**{**prepared.inputs, **got}).logits[0, -1].float()
    diff = (fast - logits.detach()).abs().max()
    assert diff <= 1e-3 * (1 + logits.detach().abs().max()), f"sdpa changes the logits by {diff:.3g}"


def check_ablation(vlm, prepared):
    """Editing the image embeddings at the LM input changes the output; a no-op edit does not."""
    img = prepared.groups.image.to(vlm.device)

    def run(edit):
        def pre(module, args, kwargs):
            emb = kwargs.get("inputs_embeds")
            kwargs = dict(kwargs, inputs_embeds=edit(emb.clone()))
            return args, kwargs

        with hooked(vlm.adapter.language_model, pre, pre=True), torch.no_grad():
            return vlm.model(**prepared.inputs).logits[0, -1].float()

    with torch.no_grad():
        base = vlm.model(**prepared.inputs).logits[0, -1].float()
    same = run(lambda e: e)
    assert torch.equal(same, base), "a no-op edit changed the output"

    def zero(e):
        e[:, img] = 0
        return e

    assert not torch.allclose(run(zero), base), "zeroing image embeddings changed nothing"


def check_recording(vlm, prepared):
    """Passthrough equals stock attention; recorded fractions equal eager ``output_attentions``."""
    from ..attention import Recorder, attention

    with torch.no_grad():
        ref = vlm.model(**prepared.inputs, output_attentions=True)
    rec = Recorder(prepared.groups, maps="none")
    with attention(vlm, record=rec), torch.no_grad():
        got = vlm.model(**prepared.inputs).logits
    assert torch.allclose(got.float(), ref.logits.float(), atol=1e-4, rtol=1e-4), \
        f"backend changes logits by {(got - ref.logits).abs().max():.3g}"
    g = prepared.groups
    frac = rec.fraction_tensor()[:, 0]  # [L, H, 4] at the last prompt row
    for layer, a in enumerate(ref.attentions):
        row = a[0, :, -1].float()  # [H, T]
        want = torch.stack([row[:, g.image].sum(-1), row[:, g.query].sum(-1), row[:, g.bos].sum(-1)], -1)
        assert torch.allclose(frac[layer, :, :3], want.cpu(), atol=1e-4), f"layer {layer} fractions differ"


def check_knockout(vlm, prepared):
    """Cutting query -> image leaves exactly zero weight on the cut pairs and changes the output."""
    from ..attention import KNOCKOUTS, Knockout, Recorder, attention

    g = prepared.groups
    seen = {}
    rec = Recorder(g)
    rec.observe = lambda layer, w, k: seen.__setitem__(layer, w.detach())
    ko = Knockout(g, [KNOCKOUTS["img->txt"]], vlm.adapter.n_layers)
    with attention(vlm, record=rec, knockout=ko), torch.no_grad():
        cut = vlm.model(**prepared.inputs).logits[0, -1].float()
    with torch.no_grad():
        base = vlm.model(**prepared.inputs).logits[0, -1].float()
    rows = g.query[g.query > g.image.min()].to(vlm.device)
    cols = g.image.to(vlm.device)
    assert len(seen) == vlm.adapter.n_layers, "not every layer ran through the backend"
    for layer, w in seen.items():
        assert torch.count_nonzero(w[0][:, rows][:, :, cols]) == 0, f"layer {layer}: cut weight left"
    assert not torch.allclose(cut, base), "knockout changed nothing"


def run_selftest(adapter_cls, device=None, workdir=None, standin: bool = False,
                 cache_dir=None, options: dict | None = None) -> SelftestResult:
    """Build the family's tiny models, load them through ``vlmscope.load``, run every check.

    ``standin=True``: run the checks on the family's stand-in at the real
    checkpoint's geometry (``vlmscope.testing.standins``) instead of the tiny
    model; stand-ins are cached in ``cache_dir`` (default: a temporary folder).
    ``options`` go to the family's tiny builder (``testing.tiny.build_tiny``).
    """
    from ..models import load

    t0 = time.perf_counter()
    res = SelftestResult(adapter_cls.family, True)
    if standin:
        from .standins import standin as find_standin, standin_path

        spec = find_standin(adapter_cls.family)
        res.model = spec.name

        def build(path, local=False):
            return standin_path(spec.name, cache_dir, local=local)

        size = spec.selftest_image_size or adapter_cls.selftest_image_size
        boxes = spec.selftest_boxes or adapter_cls.selftest_boxes
    else:
        from .tiny import build_tiny

        def build(path, local=False):
            return path if build_tiny(adapter_cls, path, local=local, **(options or {})) is not False \
                else False

        size, boxes = adapter_cls.selftest_image_size, adapter_cls.selftest_boxes

    def check(name, fn):
        try:
            out = fn()
            res.checks[name] = out if isinstance(out, str) else "ok"
        except Exception as e:  # noqa: BLE001 - a selftest reports every failure
            res.checks[name] = f"FAILED: {type(e).__name__}: {e}"
            res.passed = False

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        path = build(Path(tmp) / "tiny")
        vlm = load(path, device=device)
        res.device = str(vlm.device)
        rng = np.random.default_rng(0)
        w, h = size
        image = Image.fromarray(rng.integers(90, 170, (h, w, 3), dtype=np.uint8))
        prepared = vlm.prepare(image, "what is this ?")

        def tokens():
            n = prepared.groups.image.numel()
            assert n == len(prepared.geometry), f"{n} image tokens, geometry maps {len(prepared.geometry)}"
            cells = int((prepared.geometry.cells[:, 0] >= 0).sum())
            assert cells == sum(r * c for r, c in prepared.geometry.grids), "grid cells disagree"

        check("image tokens = geometry", tokens)
        check("generate", lambda: vlm.generate(prepared, max_new_tokens=3) and None)
        check("score", lambda: np.isfinite(vlm.score(prepared, "yes").logprobs.numpy()).all()
              or (_ for _ in ()).throw(AssertionError("non-finite log-probabilities")))

        def parts():
            a = vlm.adapter
            assert a.n_layers >= 1 and a.final_norm is not None
            assert a.unembedding.weight.shape[0] >= len(vlm.tokenizer)

        check("layers / norm / unembedding", parts)
        check("logit lens", lambda: check_lens(vlm, prepared))
        check("pixel gradients", lambda: check_pixel_gradients(vlm, prepared))
        check("image gradients", lambda: check_image_gradients(vlm, (w + 7, h + 5)))
        check("ablation", lambda: check_ablation(vlm, prepared))
        check("attention recording", lambda: check_recording(vlm, prepared))
        check("knockout", lambda: check_knockout(vlm, prepared))

        local_path = build(Path(tmp) / "tiny-local", local=True)
        if local_path is False:
            res.checks["painted square -> covering tokens"] = "skipped: the tower mixes patches"
        else:
            lvlm = load(local_path, device=device)

            def locality():
                for box in boxes:
                    changed, covering, near = check_locality(lvlm, image, box)
                    assert covering, f"no token covers {box}"
                    assert covering <= changed, f"{sorted(covering - changed)} cover {box} but did not change"
                    assert changed <= near, f"{sorted(changed - near)} changed but lie away from {box}"

            check("painted square -> covering tokens", locality)
    res.seconds = round(time.perf_counter() - t0, 2)
    return res


# ------------------------------------------------------------------ docs/models.md
def models_markdown() -> str:
    """docs/models.md, generated from the adapters (``python -m vlmscope models --markdown``)."""
    matrix = capability_matrix()
    out = ["# Model support", "",
           "Generated by `python -m vlmscope models --markdown` from the adapters; "
           "`tests/test_capabilities.py` keeps it in sync. Every \"yes\" is a check of",
           "`python -m vlmscope models --selftest`, which builds a tiny random-weight model of each",
           "family from a config, saves it with `save_pretrained`, loads it through `vlmscope.load`",
           "and verifies: image tokens = geometry, a painted square changes exactly the covering",
           "tokens' embeddings, generate, score, layers/norm/unembedding, logit lens = logits,",
           "pixel gradients, image gradients (the adapter's differentiable preprocessing",
           "reproduces the processor's pixel tensors and carries gradients to the original",
           "pixels), ablation through a hook, recorded attention fractions = eager",
           "`output_attentions`, and zero weight on knocked-out edges.", "",
           "| family | " + " | ".join(CAPABILITIES) + " |",
           "|---" * (len(CAPABILITIES) + 1) + "|"]
    for fam, caps in matrix.items():
        out.append(f"| {fam} | " + " | ".join(caps[c] for c in CAPABILITIES) + " |")
    out += ["", "Selftest devices: CPU, every family, in CI. CUDA: not yet recorded; no GPU was",
            "available to the sessions that built this (`--device cuda` runs the same checks).",
            ""] + _standins_markdown() + ["", "## Families", ""]
    for fam in supported_families():
        cls = _REGISTRY[fam]
        out += [f"### {fam}", "", f"Config class: {', '.join(f'`{c}`' for c in cls.config_classes)}.",
                "", "Meant for: " + ", ".join(f"`{c}`" for c in cls.checkpoints) + ".", ""]
        if cls.quirks:
            out += ["Quirks:", ""] + [f"- {q}" for q in cls.quirks] + [""]
    return "\n".join(out)


def _standins_markdown() -> list[str]:
    from .standins import SHAPE_COLUMNS, SHAPES

    out = ["## Stand-ins of the real checkpoints", "",
           "`vlmscope.testing.standins` builds, for every family, a random-weight model with the",
           "real checkpoint's image geometry (image size, patch, tiling / anyres grids, merge and",
           "pooling factors, min/max pixels), chat format, special tokens and attention pattern,",
           "cut to 1-2 layers per tower and width 32-64, with a tokenizer of the real kind trained",
           "here (`vlmscope.testing.make_tokenizer`): SentencePiece-style (`▁`, byte fallback) or",
           "byte-level BPE (`Ġ`). `python -m vlmscope models --selftest --standins` runs the",
           "selftest on them. Their shapes (tokens: what one 640x480 picture gives):", "",
           "| " + " | ".join(SHAPE_COLUMNS) + " |", "|---" * len(SHAPE_COLUMNS) + "|"]
    out += ["| " + " | ".join(f"`{v}`" if i < 2 else str(v) for i, v in enumerate(row)) + " |"
            for row in SHAPES]
    out += ["", "Which checks ran on which stand-in (CPU; test files in `tests/`):", "",
            "| stand-in | selftest, all checks | 640x480: geometry, iGOS mask, ablation "
            "| 1920x1080: the same (slow) | notebooks 00-09 | CUDA |", "|---|---|---|---|---|---|"]
    for row in SHAPES:
        name = row[0]
        nb = "yes (`test_notebooks.py`)" if name in ("standin-llava-1.5", "standin-qwen2-vl") else "-"
        out.append(f"| `{name}` | yes (`test_capabilities.py`) | yes (`test_standins.py`) "
                   f"| yes (`test_standins.py`) | {nb} | not run yet |")
    out += ["", "Notebooks 04-06 also run on `standin-llava-1.5` with an image folder (two 640x480",
            "pictures, one object given by a box, one by a mask PNG; `test_notebooks.py`), each",
            "saying \"Nothing to report: <reason>.\" for the random-weight answers; 00-03 and",
            "07-09 run on the sample folder `data/images` with the organism.",
            "", "The selftest paints its squares on a 96x64 picture (30x20 for LLaVA-NeXT and",
            "OneVision) except on the Idefics3 and SmolVLM stand-ins, which use their canvas size",
            "(1456x1092, 2048x1536): a small picture is enlarged ~15x there with LANCZOS, whose",
            "blur reaches further than the check's 2-pixel margin. `benchmarks/gpu_check.py`",
            "(`make gpu-check`) runs the selftest on CUDA and the notebooks on full-size 7B",
            "configs; see docs/performance.md."]
    return out
