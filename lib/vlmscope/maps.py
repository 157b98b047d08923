"""Attention fractions (Kaduri et al., Fig. 1) and attention maps with localisation (Fig. 4).

``record_generation`` generates an answer on the recording backend and keeps,
per layer and generated token, the fractions of attention on image, query
(with and without BOS) and earlier generated tokens, and the head-averaged
row over the image tokens. ``localisation`` scores those maps against
ground-truth masks: for each generated object word, is the map's peak inside
the object (pointing game), and what share of the image attention falls on
the object's tokens against the share of tokens the object covers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .attention import Recorder, attention
from .datasets.synthetic import DESCRIBE
from .metrics import mass_in_mask, pointing


@dataclass
class Recorded:
    """A generation and what the backend recorded while it ran."""

    prepared: object
    generation: object
    recorder: Recorder
    _stacked: dict = field(default_factory=dict, repr=False)  # maps stacked once, reused

    def _image_maps(self) -> np.ndarray:
        """``recorder.image_maps()`` over the generated steps, as numpy, stacked once."""
        if "maps" not in self._stacked:
            n = self.generation.token_ids.numel()
            maps = self.recorder.image_maps()[:, :n].numpy()
            maps.flags.writeable = False  # shared by every call: copy before changing
            self._stacked["maps"] = maps
        return self._stacked["maps"]

    def fractions(self) -> pd.DataFrame:
        """Tidy: layer, step, token, image, query, query_no_bos, bos, generated."""
        df = self.recorder.fractions()
        n = self.generation.token_ids.numel()
        df = df[df.step < n].copy()  # the row after the last token predicts nothing kept
        df["token"] = [self.generation.tokens[s] for s in df.step]
        return df.reset_index(drop=True)

    def maps(self) -> np.ndarray:
        """``[layers, steps, n_image]`` head-averaged attention over the image tokens."""
        maps = self._image_maps()
        if self.recorder.maps == "heads":
            if "mean" not in self._stacked:  # [L, S, H, n] -> [L, S, n], as "mean" mode keeps it
                mean = maps.mean(2)
                mean.flags.writeable = False
                self._stacked["mean"] = mean
            return self._stacked["mean"]
        return maps

    def head_maps(self) -> np.ndarray:
        """``[layers, steps, heads, n_image]`` per-head attention (needs ``maps="heads"``)."""
        if self.recorder.maps != "heads":
            raise ValueError(f"per-head maps need record_generation(..., maps='heads'); this "
                             f"generation was recorded with maps={self.recorder.maps!r}")
        return self._image_maps()

    @property
    def n_heads(self) -> int:
        """Heads kept per map: the model's heads with ``maps="heads"``, else 0."""
        return self.head_maps().shape[2] if self.recorder.maps == "heads" else 0

    def map(self, layer: int, step: int, head: int | str = "mean") -> np.ndarray:
        """``[n_image]``: one generated token's attention over the image in one layer.

        ``head="mean"`` averages the heads; an integer picks one (needs ``maps="heads"``).
        """
        maps = self.maps() if head == "mean" else self.head_maps()
        L, S = maps.shape[:2]
        if not 0 <= layer < L:
            raise IndexError(f"layer {layer} out of range: the model has {L} layers (0..{L - 1})")
        if not 0 <= step < S:
            raise IndexError(f"step {step} out of range: {S} tokens were generated (0..{S - 1})")
        if head == "mean":
            return maps[layer, step]
        if not 0 <= int(head) < maps.shape[2]:
            raise IndexError(f"head {head} out of range: the model has {maps.shape[2]} heads")
        return maps[layer, step, int(head)]


def record_generation(vlm, image, question: str = DESCRIBE,
                      max_new_tokens: int = 64, maps: str = "mean") -> Recorded:
    """Generate greedily on the recording backend."""
    prepared = vlm.prepare(image, question)
    rec = Recorder(prepared.groups, maps=maps)
    with attention(vlm, record=rec):
        gen = vlm.generate(prepared, max_new_tokens=max_new_tokens)
    return Recorded(prepared, gen, rec)


def organism_object_words(tokens: list[str], scene) -> list[tuple[int, object]]:
    """(step, object) for every colour or shape word that names an object of ``scene``.

    A colour word names the object of that colour; a shape word the object of
    that shape. Words naming nothing in the scene (hallucinations) are skipped.
    """
    out = []
    for step, t in enumerate(tokens):
        obj = scene.object_by(color=t) or scene.object_by(shape=t)
        if obj is not None:
            out.append((step, obj))
    return out


def localisation(recorded: Recorded, words: list[tuple[int, np.ndarray]], rings: int = 0,
                 head: int | str = "mean") -> pd.DataFrame:
    """Per (object word, layer): pointing game and mass-in-mask of the attention map.

    ``words`` pairs a generation step with the object's mask (original pixels).
    Columns: word (index into ``words``; words whose mask covers no image
    token are skipped), step, token, layer, pointing (the first peak token covers the mask),
    mass_in_mask (share of image attention on the object's tokens; both from ``metrics``),
    mask_share (share of image tokens that are the object's), ratio
    (mass_in_mask / mask_share: 1.0 is what a uniform map scores).
    ``head="mean"`` scores the head-averaged maps; an integer scores one head.
    """
    maps = recorded.maps() if head == "mean" else recorded.head_maps()[:, :, int(head)]  # [L, S, n]
    geo = recorded.prepared.geometry
    rows = []
    for word, (step, mask) in enumerate(words):
        if step >= maps.shape[1]:
            continue
        obj_tokens = geo.tokens_for_mask(mask, rings=rings)
        if len(obj_tokens) == 0:
            continue
        share = len(obj_tokens) / maps.shape[2]
        inside = np.zeros(maps.shape[2], dtype=bool)
        inside[obj_tokens] = True
        for layer in range(maps.shape[0]):
            m = maps[layer, step]
            mass = mass_in_mask(m, inside)
            rows.append({"word": word, "step": step, "token": recorded.generation.tokens[step],
                         "layer": layer, "pointing": pointing(m, inside, ties="first"),
                         "mass_in_mask": mass, "mask_share": share, "ratio": mass / share})
    return pd.DataFrame(rows)


def map_peaks(recorded: Recorded) -> pd.DataFrame:
    """Per (layer, step): where each head-averaged map peaks and how much the peak takes.

    Columns: layer, step, token, peak (index of the image token with the most
    attention), peak_share (its share of the image attention). Outlier
    ("sink", high-norm) tokens show up as one peak index taking a large share
    whatever the generated word is.
    """
    maps = recorded.maps()  # [L, S, n_image]
    total = maps.sum(-1)  # [L, S]
    share = np.divide(maps.max(-1), total, out=np.full(total.shape, np.nan), where=total > 0)
    L, S = total.shape
    li, si = np.meshgrid(range(L), range(S), indexing="ij")
    return pd.DataFrame({"layer": li.ravel(), "step": si.ravel(),
                         "token": [recorded.generation.tokens[s] for s in si.ravel()],
                         "peak": maps.argmax(-1).ravel(), "peak_share": share.ravel()})


def image_token_norms(vlm, prepared) -> np.ndarray:
    """``[layers, n_image]``: the L2 norm of each image token's hidden state entering each layer.

    One prompt forward reading the sites ``lm.layer.{i}.in``. Image tokens come
    before the answer and attention is causal, so these are also the states
    the generated tokens attend to. High-norm outliers are the usual
    attention sinks among image tokens.
    """
    import torch

    norms: dict[int, torch.Tensor] = {}

    def grab(x, call):  # [B, T, d] entering the layer
        norms[call.layer] = x[0, prepared.groups.image.to(x.device)].float().norm(dim=-1).cpu()

    with vlm.intervene(prepared, {"lm.layer.*.in": grab}), torch.no_grad():
        vlm.model(**prepared.inputs)
    return torch.stack([norms[layer] for layer in sorted(norms)]).numpy()


# --- outlier tokens and layer bands (notebook 02) ----------------------------------------------

def layer_bands(n_layers: int) -> dict[str, list[int]]:
    """Kaduri et al.'s early / middle / late layers: the first quarter, the last quarter, the rest.

    A band with no layer (a model of 1-3 layers) is an empty list.
    """
    early = [layer for layer in range(n_layers) if layer < n_layers / 4]
    late = [layer for layer in range(n_layers) if layer >= 3 * n_layers / 4 and layer not in early]
    middle = [layer for layer in range(n_layers) if layer not in early + late]
    return {"early": early, "middle": middle, "late": late}


def peaks_on_objects(recorded: Recorded, objects) -> pd.DataFrame:
    """``map_peaks`` with ``peak_on_object``: does the peak token cover any of ``objects``' masks."""
    peaks = map_peaks(recorded)
    geo = recorded.prepared.geometry
    on = np.unique(np.concatenate([geo.tokens_for_mask(o.mask) for o in objects]))
    peaks["peak_on_object"] = peaks.peak.isin(on)
    return peaks


def outlier_table(peaks: pd.DataFrame, image_col: str = "item") -> pd.DataFrame:
    """Per layer, over every generated token of every image: how fixed and how large the peak is.

    ``peaks``: ``peaks_on_objects`` rows of one or more images. Columns:
    peak_share (the peak token's share of the image attention), modal_peak
    (share of maps whose peak is the layer's most common peak token),
    peak_on_object (share of peaks on an object) and modal_token.
    """
    if image_col in peaks:  # images in order, each layer-major as ``map_peaks`` gives them
        peaks = peaks.sort_values([image_col, "layer", "step"], kind="stable")
    mode = peaks.groupby("layer").peak.agg(lambda p: p.value_counts().idxmax())
    flagged = peaks.assign(modal_peak=peaks.peak == peaks.layer.map(mode))
    out = flagged.groupby("layer")[["peak_share", "modal_peak", "peak_on_object"]].mean()
    out["modal_token"] = mode
    return out


def sink_norms(peaks: pd.DataFrame, norms: np.ndarray) -> pd.DataFrame:
    """Per layer, for one image: its most common peak token and where its norm ranks.

    ``peaks``: that image's ``map_peaks`` rows; ``norms``: ``image_token_norms``
    ``[layers, n_image]`` of the same prompt.
    """
    rows = []
    for layer in range(norms.shape[0]):
        counts = peaks[peaks.layer == layer].peak.value_counts()
        tok = int(counts.idxmax())
        n, median = norms[layer], np.median(norms[layer])
        rows.append({"layer": layer, "most common peak": tok,
                     "share of this scene's peaks": round(counts.max() / counts.sum(), 3),
                     "its norm / median norm": round(float(n[tok] / median), 2),
                     "norm rank (1 = largest)": int((n > n[tok]).sum()) + 1,
                     "largest norm / median": round(float(n.max() / median), 2)})
    return pd.DataFrame(rows).set_index("layer")


def crop_or_pad(vlm, scene, max_new_tokens: int = 48,
                question: str = "describe the image .") -> tuple[pd.DataFrame, dict]:
    """The scene on the left half of a 2:1 canvas, centre-cropped by the processor and padded to
    square by hand (as LLaVA-1.5's training did): image tokens per object, and both descriptions.

    Returns ``(table, texts)``: one row per object with its token count on the
    square scene, on the wide canvas after the processor's crop (0: cut away)
    and after padding; ``texts``: the description of each wide version.
    """
    image = np.asarray(scene.image)
    h, w = image.shape[:2]
    side = w * 2
    wide = np.zeros((h, side, 3), dtype=np.uint8)
    wide[:] = image[:4, :4].reshape(-1, 3).mean(0).astype(np.uint8)
    wide[:, :w] = image
    square = np.zeros((side, side, 3), dtype=np.uint8)
    square[:] = wide[0, -1]
    top = (side - h) // 2
    square[top:top + h] = wide
    own = vlm.prepare(scene.image, question)
    cropped, padded = vlm.prepare(wide, question), vlm.prepare(square, question)
    rows = []
    for o in scene.objects:
        m_wide = np.zeros((h, side), dtype=bool)
        m_wide[:, :w] = o.mask
        m_square = np.zeros((side, side), dtype=bool)
        m_square[top:top + h] = m_wide
        rows.append({"object": o.name, "where": o.where,
                     "tokens (square scene)": len(own.geometry.tokens_for_mask(o.mask)),
                     "tokens (wide, centre-cropped)": len(cropped.geometry.tokens_for_mask(
                         m_wide, allow_empty=True)),
                     "tokens (wide, padded to square)": len(padded.geometry.tokens_for_mask(m_square))})
    texts = {"wide + centre crop": vlm.generate(cropped, max_new_tokens=max_new_tokens).text,
             "wide + pad-to-square": vlm.generate(padded, max_new_tokens=max_new_tokens).text}
    return pd.DataFrame(rows), texts
