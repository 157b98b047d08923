"""The logit lens as attribution: how probable the object word is at each image token.

Each decoder layer's output at the image positions goes through the final norm and the
unembedding (``vlmscope.lens.image_lens``); the word is read in its running-text form
(``words.word_ids``'s first piece, as the lens study reads it).
"""

from __future__ import annotations

import numpy as np

from ..lens import image_lens
from ._base import from_tokens, per_layer, register


@register("lens")
def lens(vlm, prepared, answer, word: str | None = None, layer: int | None = None):
    """Probability of ``word`` (default: the answer text) at each image token.

    ``tokens``: at ``layer`` if given, else the maximum over layers per token (no truth is
    consulted). ``extra["layers"]``: every layer's probabilities; ``extra["best_layer"]``:
    the layer whose map holds the most probability in total (truth-free), ``extra["word"]``.
    """
    word = getattr(answer, "text", answer) if word is None else word
    if not isinstance(word, str) or not word.strip():
        raise ValueError("the lens reads a word: pass the answer as text or word=")
    word = word.strip()
    res = image_lens(vlm, prepared, k=1, words=[word])
    probs = np.exp(res.word_logprobs[:, :, 0])  # [layers, n_image]
    best = int(probs.sum(1).argmax())
    if layer is not None:
        layer = vlm.adapter.layer_index(layer)
        values, name = probs[layer], f"lens@L{layer}"
    else:
        values, name = probs.max(0), "lens"
    return from_tokens(name, prepared, values,
                       extra={"layers": per_layer(prepared, probs), "best_layer": best,
                              "word": word, "word_id": int(res.word_ids[0])})
