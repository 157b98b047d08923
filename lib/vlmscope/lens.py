"""The logit lens on image tokens (Neo et al., ICLR 2025, section 4).

For every decoder layer, the residual stream at each image position (the
layer's OUTPUT) goes through the final norm and the unembedding
(``Adapter.lens``): which vocabulary word does the model already "read" there?
Hugging Face's last ``hidden_states`` entry is already normed, so this module
reads the sites ``lm.layer.{i}.out`` (``vlmscope.hooks``) instead of normalising it twice.

Only the top-k of each position and layer is kept (and the log-probabilities
of any words you name), never the ``[layers, positions, vocabulary]`` block,
which is gigabytes for a 7B model.

>>> res = image_lens(vlm, prepared, k=5, words=["red", "circle"])    # doctest: +SKIP
>>> res.top_tokens(layer=3)        # [n_image] most likely word per patch    # doctest: +SKIP
>>> res.share(object_tokens, ["red", "circle"])   # per layer              # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .words import lens_ids, vocabulary_ids
from .words import word_ids as word_ids_of


@dataclass
class LensResult:
    """Top-k words per layer and image position, and the named words' log-probabilities."""

    top_ids: np.ndarray  # [layers, n_image, k]
    top_logprobs: np.ndarray  # [layers, n_image, k]
    words: tuple[str, ...]
    word_ids: tuple[int, ...]
    word_logprobs: np.ndarray  # [layers, n_image, len(words)]
    vocabulary: list[str]  # id -> token text
    tokenizer: object = field(default=None, repr=False, compare=False)  # set by image_lens

    @property
    def n_layers(self) -> int:
        return self.top_ids.shape[0]

    def top_tokens(self, layer: int) -> list[str]:
        """The top-1 word of every image position at ``layer``."""
        return [self.vocabulary[i] for i in self.top_ids[layer, :, 0]]

    def share(self, tokens, words) -> np.ndarray:
        """``[layers]``: share of the image positions ``tokens`` whose top-1 is one of ``words``.

        A word counts in its running-text form and capitalised (``▁red``,
        ``▁Red``; ``words.lens_ids``), found through the tokenizer, or through
        the vocabulary's space mark when the result has no tokenizer. A word
        that is no single token raises ``ValueError``.
        """
        tokens = np.asarray(tokens, dtype=np.int64)
        if isinstance(words, str):
            words = [words]
        ids = set()
        for w in words:
            ids |= lens_ids(self.tokenizer, w) if self.tokenizer is not None else vocabulary_ids(self.vocabulary, w)
        if tokens.size == 0:
            return np.full(self.n_layers, np.nan)
        top1 = self.top_ids[:, tokens, 0]
        return np.isin(top1, list(ids)).mean(axis=1)


@torch.no_grad()
def image_lens(vlm, prepared, k: int = 5, words=(), layers=None) -> LensResult:
    """Logit lens at every image position after every decoder layer (or ``layers``)."""
    adapter = vlm.adapter
    layer_ids = list(range(adapter.n_layers)) if layers is None else [adapter.layer_index(l) for l in layers]
    tok = vlm.tokenizer
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    word_ids = []  # each word's running-text token: what a position predicts for it
    for w in words:
        lens_ids(tok, w)  # a word of several pieces is an error naming them
        word_ids.append(word_ids_of(tok, w).first)
    img = prepared.groups.image.to(vlm.device)
    tops, top_lp, wl = {}, {}, {}

    def grab(x, call):  # an observer: returns None, the forward goes on unchanged
        logp = torch.log_softmax(adapter.lens(x[0, img.to(x.device)]).float(), dim=-1)  # [n_image, V]
        v, i = logp.topk(k, dim=-1)
        tops[call.layer], top_lp[call.layer] = i.cpu().numpy(), v.cpu().numpy()
        wl[call.layer] = logp[:, word_ids].cpu().numpy() if word_ids else np.zeros((len(img), 0))

    with vlm.intervene(prepared, {f"lm.layer.{layer}.out": grab for layer in layer_ids}):
        vlm.model(**prepared.inputs)
    return LensResult(np.stack([tops[l] for l in layer_ids]), np.stack([top_lp[l] for l in layer_ids]),
                      tuple(words), tuple(word_ids), np.stack([wl[l] for l in layer_ids]), vocab,
                      tokenizer=tok)
