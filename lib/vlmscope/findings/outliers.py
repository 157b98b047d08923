"""Outlier tokens: where each generated token's head-averaged attention map over the image
peaks, how much the peak takes and whether it sits on an object (notebook 02;
``maps.peaks_on_objects``). Kaduri et al. (Fig. 4) see early and late layers dominated by a
few outlier tokens that light up whatever the word is.

Works on synthetic scenes and annotated images alike (the objects' masks mark "on an object").
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ._common import DescribeConfig, describe_key

NAME = "outliers"


@dataclass(frozen=True)
class Config(DescribeConfig):
    """Describe each image once (``DescribeConfig``'s settings)."""


key = describe_key


def run(vlm, item, cfg: Config = Config()) -> pd.DataFrame:
    """Per (layer, generated step): peak, peak_share, peak_on_object (``maps.map_peaks``)."""
    from ..maps import peaks_on_objects, record_generation

    rec = record_generation(vlm, item.image, cfg.question, cfg.max_new_tokens)
    return peaks_on_objects(rec, item.objects)


def summarise(df: pd.DataFrame) -> dict:
    """By band of layers (``maps.layer_bands``): the peak's share of the image attention, how
    often the peak is the layer's most common token, and how often it is off every object."""
    from ..maps import layer_bands, outlier_table

    if df.empty:
        return {}
    table = outlier_table(df)
    bands = {k: v for k, v in layer_bands(int(df.layer.max()) + 1).items() if v}
    return {f"{what}[{b}]": round(float(value), 4)
            for b, layers in bands.items()
            for what, value in (("peak_share", table.peak_share.loc[layers].mean()),
                                ("modal_peak", table.modal_peak.loc[layers].mean()),
                                ("off_object", 1 - table.peak_on_object.loc[layers].mean()))}
