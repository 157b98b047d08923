"""Load a vision-language model and talk to it: prepare, generate, score.

>>> import vlmscope
>>> vlm = vlmscope.load("organism")                      # doctest: +SKIP
>>> p = vlm.prepare(image, "what color is the circle?")  # doctest: +SKIP
>>> vlm.generate(p).text                                 # doctest: +SKIP
'red'

Hugging Face does the loading, the chat template, the image preprocessing and
the generation; this module adds the token groups, the token geometry and
float32 scoring on top, and turns foreseeable mistakes into clear errors.
Finding and loading the checkpoint is ``loading.py``; reading images is
``images.py`` (``ImageError``, ``to_rgb`` and the loading names stay
importable from here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .adapters import Adapter, UnsupportedArchitecture, adapter_class_for  # noqa: F401  (re-exported)
from .images import ImageConversionWarning, ImageError, to_rgb  # noqa: F401  (re-exported)
from .loading import (DEFAULT_ORGANISM, TRANSFORMERS_FLOOR, ModelLoadError,  # noqa: F401  (re-exported)
                      check_loading_info, check_transformers_version, data_dir, default_device,
                      default_dtype, load_checkpoint, organisms)
from .attention import attention_implementation, check_attention_name  # noqa: F401  (moved; re-exported for one release)
from .tokens import TokenGeometry, TokenGroups


class PromptTooLongError(ValueError):
    """The prompt (question and image tokens) is longer than the model's context."""


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
        return self._generation(prepared, out[:1])

    @torch.no_grad()
    def generate_rows(self, prepared: Prepared, inputs: dict, max_new_tokens: int = 64,
                      **kwargs) -> tuple[list[Generation], torch.Tensor]:
        """Greedy generation for the batch rows ``inputs`` of ``prepared``'s prompt
        (``repeated_inputs``; rows that differ only by edits at hook sites, so no padding):
        one ``Generation`` per row, each as ``generate`` would give it, and the first step's
        logits ``[rows, vocab]`` (the next-token distribution at the last prompt position)."""
        kwargs.setdefault("do_sample", False)
        out = self.model.generate(**inputs, max_new_tokens=max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id, output_logits=True,
                                  return_dict_in_generate=True, **kwargs)
        rows = [self._generation(prepared, out.sequences[r:r + 1])
                for r in range(out.sequences.shape[0])]
        return rows, out.logits[0]

    def _generation(self, prepared: Prepared, sequence: torch.Tensor) -> Generation:
        """The ``Generation`` of one row ``[1, prompt + new]``: new tokens up to the first stop."""
        new = sequence[0, prepared.input_ids.shape[1]:].cpu()
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
            token_ids=ids, sequence=sequence[:, :prepared.input_ids.shape[1] + len(keep)].cpu(),
            groups=prepared.groups.with_generated(len(keep)),
            tokens=self.tokenizer.convert_ids_to_tokens(keep))

    def repeated_inputs(self, prepared: Prepared, size: int) -> dict | None:
        """The prepared prompt ``size`` times, as one batch through the processor, or None when
        the processor's rows are not the prepared prompt's (callers then run one row at a
        time). For batch rows that differ only by an edit at a hook site."""
        text = self.chat_text(prepared.question)
        try:
            inputs = self.processor(text=[text] * size, images=[[prepared.image]] * size,
                                    return_tensors="pt", **self._special_tokens_kwargs(text))
        except (ValueError, TypeError):
            return None
        inputs.pop("labels", None)
        inputs = {k: (v.to(self.input_device, self.dtype) if v.is_floating_point()
                      else v.to(self.input_device)) for k, v in inputs.items()}
        ids = inputs["input_ids"]
        if ids.shape != (size, prepared.input_ids.shape[1]) or not bool(
                (ids == prepared.input_ids.to(ids.device)).all()):
            return None
        return inputs

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


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator running out of memory (CUDA, MPS or CPU)."""
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, (oom, MemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text
                                                or "can't allocate memory" in text)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> float32 (log_softmax underflows in half precision); float64 stays float64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


# ------------------------------------------------------------------------- load
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
    progress : show transformers' weight-loading bar (off by default, so a
        notebook's setup cell stays quiet; warnings and errors still show).

    Every weight the model expects must come from the checkpoint: missing,
    unexpected or mismatched keys raise ``ModelLoadError`` naming them.
    """
    net, processor, adapter_cls, name = load_checkpoint(
        model, device=device, dtype=dtype, device_map=device_map,
        attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
        revision=revision, quantization_config=quantization_config, **kwargs)
    return VLM(net, processor, adapter_cls(net, processor), name=name)


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
