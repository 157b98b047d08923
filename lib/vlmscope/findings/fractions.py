"""Attention fractions: the share of each generated token's attention on image, query and
generated tokens, per layer (notebook 01; ``maps.record_generation``).

Works on synthetic scenes and on annotated images alike (it needs only the image).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DescribeConfig, describe_key, ours_vs_paper, paper_table

NAME = "fractions"


@dataclass(frozen=True)
class Config(DescribeConfig):
    """Describe each image once (``DescribeConfig``'s settings)."""


key = describe_key


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    from ..maps import record_generation

    from .sense import mentioned_objects

    rec = record_generation(vlm, item.image, cfg.question, cfg.max_new_tokens, maps="none")
    df = rec.fractions()
    named = {step for step, _ in mentioned_objects(rec.generation.tokens, item)}
    df["names_object"] = df.step.isin(named)  # the token written at this step names an object
    return df


def summarise(df: pd.DataFrame) -> dict:
    if df.empty:
        return {}
    by = df.groupby("layer")[["image", "query", "query_no_bos", "generated"]].mean()
    return {"image_mean": round(float(by.image.mean()), 4),
            "query_mean": round(float(by["query"].mean()), 4),
            "peak_image_layer": int(by.image.idxmax())}


KADURI = "Kaduri et al., CVPR 2025, Fig. 1 (shared/REFERENCES.md B)"
PAPER = paper_table([
    ("image_mean", "small: below the image's share of the sequence", "InternVL2-76B, LLaVA-1.5-7B",
     KADURI),
    ("peak_image_layer", "middle layers", "InternVL2-76B, LLaVA-1.5-7B", KADURI),
])


def vs_paper(data) -> pd.DataFrame:
    """Our figures beside the paper's (a run's rows or its summary). The paper gives curves,
    not numbers: the note says what to compare."""
    s = summarise(data) if isinstance(data, pd.DataFrame) else dict(data)
    ours = {"image_mean": s.get("image_mean"), "peak_image_layer": s.get("peak_image_layer")}
    notes = {"image_mean": "mean share of generated tokens' attention on the image, over layers"}
    if isinstance(data, pd.DataFrame) and len(data):
        L = int(data.layer.max()) + 1
        notes["peak_image_layer"] = f"layer index of {L} layers"
    return ours_vs_paper(PAPER, ours, notes)


# --- notebook 01: the headline and the paper's claims ----------------------------------------



def report(df: pd.DataFrame, image_tokens: int, prompt_length: int, n_images: int) -> dict:
    """Notebook 01's headline numbers from this finding's rows (all items of a run).

    ``image_tokens`` / ``prompt_length``: the first item's image tokens and
    prompt length (the image's share of the prompt); ``object_words`` counts the
    generated tokens naming an object of their image (column ``names_object``).
    """
    by_layer = df.groupby("layer")[["image", "query", "query_no_bos", "bos", "generated"]].mean()
    named = df[df.layer == df.layer.min()] if len(df) else df
    return {"image_share_of_prompt_tokens": round(image_tokens / prompt_length, 3),
            "mean_image_attention": round(float(by_layer.image.mean()), 3),
            "peak_image_layer": int(by_layer.image.idxmax()),
            "mean_bos_attention": round(float(by_layer.bos.mean()), 3),
            "n_images": n_images, "object_words": int(named.names_object.sum()) if len(df) else 0}


def what_we_found(summary: dict, model: str, n_layers: int) -> str:
    """Notebook 01's conclusion in words, from ``report``'s summary: the image's share of the
    generated tokens' attention against its share of the prompt (what attention spread evenly
    over the prompt would give), and where the image share peaks against the paper's middle
    layers (``maps.layer_bands``)."""
    from ..maps import layer_bands

    att, seq = summary.get("mean_image_attention"), summary.get("image_share_of_prompt_tokens")
    if att is None or seq is None:
        return f"**{model}**: no attention was recorded, so there is nothing to compare."
    peak = summary.get("peak_image_layer")
    band = next((b for b, ls in layer_bands(n_layers).items() if peak in ls), "no")
    below = att < seq
    out = (f"**{model}**: generated tokens put {att:.0%} of their attention on the image tokens "
           f"(mean over layers), which are {seq:.0%} of the prompt, the share attention spread "
           f"evenly over the prompt would give. That is "
           + ("below the image's share, as the paper finds: the image gets less attention than "
              "its size alone would give it." if below else
              "above the image's share: unlike the paper, this model's generated tokens look at "
              "the image more than its size alone would make them."))
    out += (f" The image's share peaks at layer {peak} of {n_layers} (the {band} layers); the "
            "paper's peak is in the middle layers"
            + (", and so is this one." if band == "middle" else ", this one is not."))
    if not summary.get("object_words"):
        out += " No description names an object, so these are a nonsense model's shares."
    return out
