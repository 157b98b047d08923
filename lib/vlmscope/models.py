"""Load a vision-language model and talk to it: prepare, generate, score.

>>> import vlmscope
>>> vlm = vlmscope.load("organism")                      # doctest: +SKIP
>>> p = vlm.prepare(image, "what color is the circle?")  # doctest: +SKIP
>>> vlm.generate(p).text                                 # doctest: +SKIP
'red'

Hugging Face does the loading, the chat template, the image preprocessing and
the generation; this module adds the token groups, the token geometry and
float32 scoring on top, and turns foreseeable mistakes into clear errors.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .adapters import Adapter, UnsupportedArchitecture, adapter_class_for
from .attention import attention_implementation, check_attention_name  # noqa: F401  (moved; re-exported for one release)
from .tokens import TokenGeometry, TokenGroups


class ModelLoadError(ValueError):
    """The model could not be found or loaded."""


class ImageError(ValueError):
    """An image could not be read or converted."""


class PromptTooLongError(ValueError):
    """The prompt (question and image tokens) is longer than the model's context."""


class ImageConversionWarning(UserWarning):
    """An image was converted (e.g. grayscale or RGBA to RGB) before use."""


# ------------------------------------------------------------------- organisms
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


# ----------------------------------------------------------------------- images
def to_rgb(image, notes: list[str] | None = None) -> "Image.Image":
    """Read ``image`` (PIL image, path, bytes, or ``[H, W(, C)]`` array) as RGB.

    Grayscale, palette, 16-bit and RGBA images are converted (RGBA is
    composited on white) with an ``ImageConversionWarning`` and a note.
    """
    from PIL import Image, UnidentifiedImageError

    notes = notes if notes is not None else []
    src = "image"
    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    if isinstance(image, (str, Path)):
        src = str(image)
        if not Path(image).exists():
            raise ImageError(f"no image file at {src}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(image) as im:
                    im.load()
                    image = im.copy()
        except bomb as e:
            raise ImageError(f"the image at {src} is too large to decode safely "
                             f"(a possible decompression bomb): {e}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"could not decode the image at {src}: {e}") from None
    elif isinstance(image, (bytes, bytearray)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(image))
                image.load()
        except bomb as e:
            raise ImageError(f"the image bytes are too large to decode safely "
                             f"(a possible decompression bomb): {e}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"could not decode the image bytes: {e}") from None
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise ImageError(f"an image array must be [H, W] or [H, W, 1|3|4], not {arr.shape}")
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
            raise ImageError(f"an image array must hold numbers, not {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ImageError(f"the image array holds {bad} NaN or infinite values of {arr.size}")
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
                arr = arr * 255
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    elif not isinstance(image, Image.Image):
        raise ImageError(f"expected a PIL image, a path, bytes or an array, not {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{src} is empty ({image.width}x{image.height})")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageError(f"{src} is too large ({image.width}x{image.height} = "
                         f"{image.width * image.height} pixels; PIL's decompression-bomb limit is "
                         f"{limit}); downscale it first")
    if image.mode != "RGB":
        mode = image.mode
        if mode in ("RGBA", "LA") or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(bg, rgba).convert("RGB")
            msg = f"{src}: {mode} image composited on white and converted to RGB"
        elif mode.startswith("I"):
            arr = np.asarray(image, dtype=np.float64)
            hi = 65535.0 if arr.max() > 255 else 255.0
            image = Image.fromarray((arr / hi * 255).clip(0, 255).astype(np.uint8)).convert("RGB")
            msg = f"{src}: {mode} image rescaled to 8 bits and converted to RGB"
        else:
            image = image.convert("RGB")
            msg = f"{src}: {mode} image converted to RGB"
        warnings.warn(msg, ImageConversionWarning, stacklevel=3)
        notes.append(msg)
    return image


# ---------------------------------------------------------------------- results
@dataclass
class Prepared:
    """Model inputs for one image and question, with their token groups and geometry."""

    inputs: dict
    groups: TokenGroups
    geometry: TokenGeometry
    image: "Image.Image"
    question: str
    notes: list[str] = field(default_factory=list)

    @property
    def input_ids(self) -> torch.Tensor:
        return self.inputs["input_ids"]


@dataclass
class Generation:
    """A generated answer: text, new token ids and the groups over the full sequence."""

    text: str
    token_ids: torch.Tensor  # [n_new], eos excluded
    sequence: torch.Tensor  # [1, prompt + n_new]
    groups: TokenGroups
    tokens: list[str]


@dataclass
class Score:
    """Teacher-forced log-probabilities of an answer (float32)."""

    token_ids: torch.Tensor  # [n]
    tokens: list[str]
    logprobs: torch.Tensor  # [n] log p(y_t | image, question, y_<t)

    @property
    def total(self) -> float:
        return float(self.logprobs.sum())


# -------------------------------------------------------------------------- VLM
class VLM:
    """A loaded model, its processor and its family adapter."""

    def __init__(self, model, processor, adapter: Adapter, name: str = ""):
        self.model = model
        self.processor = processor
        self.adapter = adapter
        self.name = name

    def __repr__(self) -> str:
        return (f"VLM({self.name!r}, family={self.adapter.family}, layers={self.adapter.n_layers}, "
                f"device={self.device}, dtype={self.dtype})")

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def input_device(self) -> torch.device:
        """Where inputs go: the device of the input embedding (the first layer of a model spread
        over several devices; accelerate's hooks move activations on from there)."""
        emb = self.model.get_input_embeddings()
        return emb.weight.device if emb is not None else next(self.model.parameters()).device

    @property
    def device(self) -> torch.device:
        """Same as ``input_device``: where inputs and index tensors for the inputs go."""
        return self.input_device

    @property
    def dtype(self) -> torch.dtype:
        """The floating-point dtype of the weights (a quantised model's compute dtype side)."""
        dt = getattr(self.model, "dtype", None)
        return dt if isinstance(dt, torch.dtype) else next(self.model.parameters()).dtype

    # ------------------------------------------------------------------ prepare
    def chat_text(self, question: str) -> str:
        """The prompt text: the family's own format, else the processor's chat template."""
        text = self.adapter.prompt_text(question)
        if text is not None:
            return text
        msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(msgs, add_generation_prompt=True)

    def prepare(self, image, question: str) -> Prepared:
        """Inputs for ``image`` and ``question`` through the processor's chat template."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty: pass a non-empty string")
        notes: list[str] = []
        rgb = to_rgb(image, notes)
        text = self.chat_text(question.strip())
        inputs = self.processor(text=text, images=rgb, return_tensors="pt",
                                **self._special_tokens_kwargs(text))
        inputs.pop("labels", None)  # some processors (PaliGemma) add labels: no loss wanted
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        ids = inputs["input_ids"][0].cpu()
        context = self.context_length
        if context is not None and ids.numel() > context:
            raise PromptTooLongError(
                f"the prompt is {ids.numel()} tokens long (question and image tokens) but the "
                f"model's context is {context} tokens; shorten the question ({len(question)} "
                "characters)")
        groups = TokenGroups.from_ids(ids, self.adapter.image_token_id, self.tokenizer.bos_token_id)
        geometry = self.adapter.geometry(rgb.size, inputs)
        if len(geometry) != groups.image.numel():
            raise RuntimeError(
                f"{self.adapter.family} adapter maps {len(geometry)} image tokens but the "
                f"processor produced {groups.image.numel()}; the processor config is not one "
                "this adapter understands")
        return Prepared(inputs, groups, geometry, rgb, question.strip(), notes)

    @property
    def context_length(self) -> int | None:
        """The language model's context in tokens (``max_position_embeddings``), None if unknown."""
        cfg = self.model.config
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        n = getattr(text, "max_position_embeddings", None)
        return int(n) if isinstance(n, int) and n > 0 else None

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding: the ids the model accepts."""
        return int(self.model.get_input_embeddings().num_embeddings)

    def _special_tokens_kwargs(self, text: str) -> dict:
        """Templates that already start with BOS must not get a second one (Gemma 3)."""
        bos = self.tokenizer.bos_token
        return {"add_special_tokens": False} if bos and text.startswith(bos) else {}

    # ----------------------------------------------------------------- generate
    @torch.no_grad()
    def generate(self, prepared: Prepared, max_new_tokens: int = 64, **kwargs) -> Generation:
        """Greedy generation (pass ``do_sample=True`` etc. to change); EOS excluded."""
        kwargs.setdefault("do_sample", False)
        out = self.model.generate(**prepared.inputs, max_new_tokens=max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id, **kwargs)
        new = out[0, prepared.input_ids.shape[1]:].cpu()
        stop = set(_as_list(self.model.generation_config.eos_token_id))
        stop.add(self.tokenizer.eos_token_id)
        stop.discard(None)
        keep = []
        for t in new.tolist():
            if t in stop:
                break
            keep.append(t)
        ids = torch.tensor(keep, dtype=torch.long)
        return Generation(
            text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
            token_ids=ids, sequence=out[:, :prepared.input_ids.shape[1] + len(keep)].cpu(),
            groups=prepared.groups.with_generated(len(keep)),
            tokens=self.tokenizer.convert_ids_to_tokens(keep))

    @torch.no_grad()
    def answer(self, images, questions, max_new_tokens: int = 64, batch_size: int = 16) -> list[str]:
        """Greedy answers for many (image, question) pairs, batched with left padding."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} images but {len(questions)} questions")
        texts = []
        for q in questions:
            if not isinstance(q, str) or not q.strip():
                raise ValueError("a question is empty: pass non-empty strings")
            texts.append(self.chat_text(q.strip()))
        rgb = [to_rgb(im) for im in images]
        tok = self.tokenizer
        old_side = tok.padding_side
        tok.padding_side = "left"
        out: list[str] = []
        try:
            for i in range(0, len(texts), batch_size):
                inputs = self.processor(text=texts[i:i + batch_size],
                                        images=[[im] for im in rgb[i:i + batch_size]],
                                        return_tensors="pt", padding=True,
                                        **self._special_tokens_kwargs(texts[i]))
                inputs.pop("labels", None)
                inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point()
                              else v.to(self.device)) for k, v in inputs.items()}
                seq = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=tok.pad_token_id)
                new = seq[:, inputs["input_ids"].shape[1]:]
                out += [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
        finally:
            tok.padding_side = old_side
        return out

    # -------------------------------------------------------------------- score
    def answer_ids(self, answer, prepared: Prepared | None = None) -> torch.Tensor:
        """Token ids of an answer given as text, a ``Generation`` or ids.

        Text is tokenized as it follows ``prepared``'s prompt when given
        (``words.answer_ids``: "ASSISTANT: red" gives ``▁red``), else alone.
        """
        if isinstance(answer, Generation):
            return answer.token_ids
        if isinstance(answer, str):
            if not answer.strip():
                raise ValueError("the answer to score is empty")
            if prepared is not None:
                from .words import answer_ids

                return torch.tensor(answer_ids(self.tokenizer, self.chat_text(prepared.question), answer))
            return torch.tensor(self.tokenizer(answer, add_special_tokens=False)["input_ids"])
        return torch.as_tensor(answer, dtype=torch.long).reshape(-1)

    def score(self, prepared: Prepared, answer, **model_kwargs) -> Score:
        """Teacher-forced per-token log-probabilities of ``answer`` (log_softmax in float32)."""
        ids = self.answer_ids(answer, prepared).to(self.device)
        if ids.numel() == 0:
            raise ValueError("the answer to score has no tokens")
        if ids.is_floating_point() or ids.min() < 0 or ids.max() >= self.vocab_size:
            bad = sorted({int(i) for i in ids.tolist() if not 0 <= i < self.vocab_size})[:5]
            raise ValueError(f"token ids {bad} are outside the model's vocabulary "
                             f"(0..{self.vocab_size - 1})")
        n = prepared.input_ids.shape[1]
        inputs = self.adapter.extend_inputs(prepared.inputs, ids[None])
        with torch.no_grad():
            logits = self.model(**inputs, **model_kwargs).logits[0, n - 1:-1]  # [n_ans, V]
        logp = torch.log_softmax(at_least_float32(logits), dim=-1).gather(1, ids[:, None])[:, 0]
        return Score(ids.cpu(), self.tokenizer.convert_ids_to_tokens(ids.tolist()), logp.cpu())

    # -------------------------------------------------------------- hook sites
    def sites(self) -> list[str]:
        """The named hook sites of this model (``vlmscope.hooks``): ``vision.layer.{i}``,
        ``projector``, ``lm.input``, ``lm.layer.{i}.in|attn|mlp|out``, ``lm.final_norm``, ``logits``."""
        from .hooks import sites

        return sites(self)

    def capture(self, prepared: Prepared, sites, device="cpu", answer=None):
        """One forward keeping the tensors at ``sites`` (names or patterns): a ``hooks.Cache``."""
        from .hooks import capture

        return capture(self, prepared, sites, device=device, answer=answer)

    def intervene(self, prepared: Prepared | None, edits: dict):
        """A context in which forward, ``generate`` and ``score`` pass each site's tensor through
        its function (``hooks.intervene``); the hooks go on leaving it, also after an error."""
        from .hooks import intervene

        return intervene(self, prepared, edits)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> float32 (log_softmax underflows in half precision); float64 stays float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


# ------------------------------------------------------------------------- load
def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


# The oldest transformers on which the whole suite passes (pyproject.toml declares it).
TRANSFORMERS_FLOOR = "5.23.0"


def check_transformers_version(version: str | None = None) -> None:
    """``ModelLoadError`` for a transformers older than ``TRANSFORMERS_FLOOR``.

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
            f"upgrade with: pip install 'transformers>={TRANSFORMERS_FLOOR},<6'")


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


def load(model: str | os.PathLike, *, device=None, dtype=None, device_map=None,
         attn_implementation: str = "eager", trust_remote_code: bool = False,
         revision: str | None = None, quantization_config=None, **kwargs) -> VLM:
    """Load a VLM by hub id, local directory, or bundled organism name.

    Parameters
    ----------
    model : ``"organism"`` / ``"organism-vit-m"`` ..., a local directory saved
        with ``save_pretrained``, or a Hugging Face hub id.
    device, dtype : default to CUDA with bf16 (fp16 where bf16 is missing),
        else CPU with float32. ``dtype="auto"`` keeps the checkpoint's.
    device_map : passed to ``from_pretrained`` (``"auto"`` spreads a large
        model over the GPUs, then the CPU; needs ``accelerate``); the model is
        then left where it was placed, never moved. Not with ``device``.
    revision, quantization_config, other keyword arguments : passed through
        to ``from_pretrained`` (a quantised model is not moved either).
    attn_implementation : "eager" (default) so attention weights exist.
    trust_remote_code : off unless you ask; remote code runs arbitrary Python.

    Every weight the model expects must come from the checkpoint: missing,
    unexpected or mismatched keys raise ``ModelLoadError`` naming them.
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
    return VLM(net, processor, adapter_cls(net, processor), name=name)


def _map_device(device_map) -> torch.device:
    """The device a ``device_map`` puts most of the model on, for the default dtype."""
    if isinstance(device_map, dict):
        devs = [torch.device(f"cuda:{d}" if isinstance(d, int) else d) for d in device_map.values()
                if str(d) not in ("disk", "meta")]
        return torch.device("cuda") if any(d.type == "cuda" for d in devs) else torch.device("cpu")
    if isinstance(device_map, str) and device_map not in ("auto", "balanced", "balanced_low_0", "sequential"):
        return torch.device(device_map)
    return default_device()


def wrap(model, processor, name: str = "") -> VLM:
    """A ``VLM`` around a model and processor you loaded yourself (any device map or quantisation).

    The model is left where it is and put in eval mode; its family adapter is
    chosen from its config like ``load`` does (``UnsupportedArchitecture``
    otherwise). Attention maps need it loaded with ``attn_implementation="eager"``.
    """
    from transformers import PreTrainedModel

    check_transformers_version()
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"wrap expects a transformers PreTrainedModel, not {type(model).__name__}")
    if getattr(processor, "tokenizer", None) is None:
        raise TypeError(f"wrap expects the model's processor (with a tokenizer), not {type(processor).__name__}")
    adapter_cls = adapter_class_for(model.config)
    model.eval()
    return VLM(model, processor, adapter_cls(model, processor),
               name=name or getattr(model.config, "_name_or_path", "") or type(model).__name__)


__all__ = ["load", "wrap", "VLM", "Prepared", "Generation", "Score", "ModelLoadError", "ImageError",
           "PromptTooLongError",
           "ImageConversionWarning", "UnsupportedArchitecture", "organisms", "to_rgb"]
