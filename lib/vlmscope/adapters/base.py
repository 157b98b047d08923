"""What every analysis needs to know about one architecture family.

An adapter answers, for a loaded model and processor: where are the decoder
layers, the final norm and the unembedding; which token id marks image
tokens; and which box of the original image each image token covers. Adapters
are chosen by the model's config class, so a fine-tune under a new name is
recognised as long as it keeps its family's config class.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..tokens import TokenGeometry


# the columns of the capability matrix (docs/models.md); every "yes" is a selftest check
CAPABILITIES = ("attention recording", "knockout", "ablation", "logit lens", "pixel gradients",
                "image gradients")


class UnsupportedArchitecture(ValueError):
    """The model's architecture has no adapter."""


class Adapter:
    """Per-family facts. Subclasses set the class attributes and ``geometry``."""

    family: ClassVar[str] = ""
    config_classes: ClassVar[tuple[str, ...]] = ()
    checkpoints: ClassVar[tuple[str, ...]] = ()
    # capability -> "yes" | "no: reason" | "untested"; see docs/models.md. Every "yes"
    # is backed by a check of the family's selftest (tests/test_capabilities.py).
    capabilities: ClassVar[dict[str, str]] = {}
    default_capabilities: ClassVar[dict[str, str]] = {
        "attention recording": "yes", "knockout": "yes", "ablation": "yes",
        "logit lens": "yes", "pixel gradients": "yes",
        "image gradients": "no: no differentiable preprocessing for this family yet"}
    quirks: ClassVar[tuple[str, ...]] = ()
    # for the selftest: the test image's (width, height) and boxes (x0, y0, x1, y1) to paint
    selftest_image_size: ClassVar[tuple[int, int]] = (96, 64)
    selftest_boxes: ClassVar[tuple[tuple[int, int, int, int], ...]] = ((50, 10, 60, 20),)

    def __init__(self, model, processor):
        self.model = model
        self.processor = processor

    # -- language model parts -------------------------------------------------
    @property
    def language_model(self):
        """The decoder stack (``model.model.language_model`` in transformers 5)."""
        inner = getattr(self.model, "model", self.model)
        lm = getattr(inner, "language_model", None)
        if lm is None:
            lm = self.model.get_decoder()
        return lm

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self.language_model.layers

    @property
    def final_norm(self) -> torch.nn.Module:
        return self.language_model.norm

    @property
    def unembedding(self) -> torch.nn.Module:
        return self.model.get_output_embeddings()

    def lens(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logit lens: final norm then unembedding of a residual ``[..., d]`` -> ``[..., V]``.

        Feed it a decoder layer's OUTPUT (the residual stream), never the model's
        last ``hidden_states`` entry, which Hugging Face returns already normed.
        """
        # a layer of a model spread over devices may live elsewhere than the final norm
        norm_device = next(iter(self.final_norm.parameters()), hidden).device
        logits = self.unembedding(self.final_norm(hidden.to(norm_device)))
        cap = getattr(getattr(self.model.config, "text_config", self.model.config),
                      "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    # -- named hook sites (vlmscope.hooks) ------------------------------------
    # where the vision side lives, first match wins: LLaVA, Gemma, InternVL use
    # vision_tower + multi_modal_projector; Idefics3 / SmolVLM vision_model + connector;
    # Qwen2-VL visual (blocks) with its merger as the projector
    vision_names: ClassVar[tuple[str, ...]] = ("vision_tower", "vision_model", "visual")
    vision_layer_paths: ClassVar[tuple[str, ...]] = ("encoder.layers", "encoder.layer", "blocks")
    projector_paths: ClassVar[tuple[str, ...]] = ("multi_modal_projector", "connector", "visual.merger")

    def _inner(self):
        return getattr(self.model, "model", self.model)

    @staticmethod
    def _path(root, path: str):
        for part in path.split("."):
            root = getattr(root, part, None)
            if root is None:
                return None
        return root

    @property
    def vision_tower(self) -> torch.nn.Module:
        """The vision encoder."""
        for name in self.vision_names:
            m = getattr(self._inner(), name, None)
            if m is not None:
                return m
        raise UnsupportedArchitecture(f"{self.family}: no vision tower found (looked for "
                                      f"{', '.join(self.vision_names)})")

    @property
    def vision_layers(self) -> torch.nn.ModuleList:
        """The vision encoder's layers, in order."""
        tower = self.vision_tower
        for path in self.vision_layer_paths:
            m = self._path(tower, path)
            if isinstance(m, torch.nn.ModuleList):
                return m
        raise UnsupportedArchitecture(f"{self.family}: no layer list in {type(tower).__name__}")

    @property
    def projector(self) -> torch.nn.Module:
        """The module whose output are the image tokens' language-model embeddings."""
        for path in self.projector_paths:
            m = self._path(self._inner(), path)
            if m is not None:
                return m
        raise UnsupportedArchitecture(f"{self.family}: no projector found (looked for "
                                      f"{', '.join(self.projector_paths)})")

    def layer_parts(self, layer: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module | None]:
        """A decoder layer's attention block and MLP (None where it has no ``mlp``)."""
        attn = getattr(layer, "self_attn", None)
        if attn is None:
            raise UnsupportedArchitecture(f"{self.family}: decoder layer {type(layer).__name__} "
                                          "has no self_attn")
        return attn, getattr(layer, "mlp", None)

    @property
    def image_token_id(self) -> int:
        cfg = self.model.config
        tid = getattr(cfg, "image_token_id", None)
        if tid is None:
            tid = getattr(cfg, "image_token_index", None)
        if tid is None:
            raise UnsupportedArchitecture(f"{type(cfg).__name__} names no image token id")
        return int(tid)

    def layer_index(self, layer: int) -> int:
        """Validate a layer index (negative counts from the end)."""
        n = self.n_layers
        if not -n <= layer < n:
            raise IndexError(f"layer {layer} is out of range: this model has {n} decoder layers "
                             f"(0..{n - 1})")
        return layer % n

    def prompt_text(self, question: str) -> str | None:
        """The prompt for ``question`` when the family has no chat template; None = use it."""
        return None

    @classmethod
    def load_processor(cls, source, **kwargs):
        """The checkpoint's processor (``AutoProcessor``; a family may override)."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(source, **kwargs)

    def extend_inputs(self, inputs: dict, new_ids: torch.Tensor) -> dict:
        """Inputs for the prompt followed by ``new_ids [1, n]`` (teacher forcing).

        Every per-token tensor (``[1, T]`` like ``input_ids``) is extended:
        ``attention_mask`` with ones, other per-token ids (``token_type_ids``,
        ``mm_token_type_ids``) with zeros, i.e. "text". Families whose suffix
        tokens are marked differently override this.
        """
        ids = inputs["input_ids"]
        out = dict(inputs)
        out["input_ids"] = torch.cat([ids, new_ids.to(ids.device)], dim=1)
        for k, v in inputs.items():
            if k == "input_ids" or not torch.is_tensor(v) or v.shape[:2] != ids.shape[:2]:
                continue
            fill = torch.ones if k == "attention_mask" else torch.zeros
            out[k] = torch.cat([v, fill(v.shape[0], new_ids.shape[1], *v.shape[2:], dtype=v.dtype,
                                        device=v.device)], dim=1)
        return out

    # -- image geometry -------------------------------------------------------
    def geometry(self, image_size: tuple[int, int], inputs) -> TokenGeometry:
        """Token boxes for an original image of ``(width, height)`` and its processed inputs."""
        raise NotImplementedError

    def preprocessing(self) -> str:
        """A short description of how images are resized, cropped or padded."""
        return ""

    def pixel_inputs(self, image: torch.Tensor, inputs: dict) -> dict:
        """Differentiable preprocessing: the original image -> the processor's pixel tensors.

        ``image`` is ``[3, H, W]`` in 0..1 (``vlmscope.pixels.image_tensor``), of the
        same size as the image that produced ``inputs``; gradients flow through.
        Returns the entries to replace in ``inputs`` (``pixel_values`` and any
        other pixel tensor), shaped, ordered and normalised as the processor
        made them; layout entries (``image_sizes``, ``image_grid_thw``) are not
        returned, they stay as the processor set them.
        """
        raise NotImplementedError(
            f"{self.family}: no differentiable preprocessing, so heatmaps cannot reach the "
            "original pixels (capability 'image gradients')")


_REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    _REGISTRY[cls.family] = cls
    return cls


def capability_matrix() -> dict[str, dict[str, str]]:
    """family -> capability -> "yes" | "no: reason" | "untested"."""
    return {f: {**_REGISTRY[f].default_capabilities, **_REGISTRY[f].capabilities}
            for f in supported_families()}


def adapter_class(family: str) -> type[Adapter]:
    try:
        return _REGISTRY[family]
    except KeyError:
        raise UnsupportedArchitecture(
            f"no family {family!r}; supported: {', '.join(supported_families())}") from None


def supported_families() -> list[str]:
    return sorted(_REGISTRY)


def adapter_class_for(config) -> type[Adapter]:
    """The adapter class for a config object, or an ``UnsupportedArchitecture`` error."""
    name = type(config).__name__
    for cls in _REGISTRY.values():
        if name in cls.config_classes:
            return cls
    archs = ", ".join(getattr(config, "architectures", None) or [name])
    listing = "; ".join(f"{f} ({', '.join(_REGISTRY[f].config_classes)})" for f in supported_families())
    raise UnsupportedArchitecture(
        f"vlmscope has no adapter for {archs} (config {name}, model_type "
        f"{getattr(config, 'model_type', '?')!r}). Supported families: {listing}."
    )
