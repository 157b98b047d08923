"""``HeatmapConfig``, every knob of a heatmap, and its named presets ("reference", "vlmscope")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..models import check_attention_name


@dataclass(frozen=True)
class HeatmapConfig:
    """Every knob of the heatmap. Field defaults: the "vlmscope" preset (iGOS+ at the reference
    README's hyperparameters, with this library's choices); ``HeatmapConfig.preset("reference")``
    follows the released code's definitions (docs/fidelity.md, "Heatmaps").

    The reference's ``args.py`` defaults differ (L1 0.1, L2 1.0, L3 20,
    gamma 0.2, ig_iter 5, momentum 3): ``HeatmapConfig.reference_args()``.
    """

    method: str = "igos+"  # "igos+" (one mask) or "igos++" (deletion and insertion masks)
    size: int = 32  # mask grid (size x size)
    iterations: int = 5
    ig_iter: int = 10  # N path points of the integrated-gradient terms
    l1: float = 1.0
    l2: float = 0.1  # decaying L2, times exp(-gamma * iteration)
    l3: float = 10.0  # bilateral total variation
    gamma: float = 1.0
    momentum: float = 5.0  # Nesterov: e_i = i / (i + momentum)
    lr: float = 10.0  # Nesterov step; the line search's first trial step
    noise: float = 0.2  # std of Gaussian noise on path images, normalised pixel units
    baseline: str = "blur"  # "blur" | "black" | "noise"
    btv_sigma: float = 0.01
    threshold: float = 1.0  # token selection: log-prob gain over the baseline
    single_token_ratio: float = 0.5  # single-token answers: keep when p(y|B) <= ratio * p(y|I)
    drop_first: bool = True  # token selection: never select answer position 0 (the first release)
    batch: int = 8  # images per forward (+ backward): iGOS path images and faithfulness steps;
    #                 a speed/memory knob (the mask does not depend on it)
    attn_implementation: str | None = "sdpa"  # attention kernels while optimising; None = as loaded
    seed: int = 0
    # -- the released code's definitions against this library's (docs/fidelity.md) --
    btv: str = "ours"  # "ours": symmetric edge weights on [0, 1] pixels, no 1/2;
    #                    "released": 1/2 x (four terms), edge weights on the processor-normalised
    #                    image, vertical exp(-(mean_c dI)^2/s), horizontal mean_c exp(-dI^2/s)
    blur_uint8: bool = False  # the blurred baseline made on the uint8 image and rounded (released)
    combine: str = "product"  # iGOS++ combined term: "product" up(Md*Mi) | "upsampled" up(Md)*up(Mi)
    step: str = "nesterov"  # "nesterov" (the released code's only working update) | "armijo"
    ls_beta: float = 1e-4  # Armijo: accept when loss(new) <= loss - ls_beta * step * |grad|^2
    ls_decay: float = 0.2  # Armijo: step *= ls_decay after a rejected trial
    ls_min: float = 1e-5  # Armijo: smallest step tried
    noise_seeds: str = "per-image"  # "per-image": a seed per path image (noise_seed) |
    #                                 "shared": one generator drawn in path order (released)
    deletion_metric: str = "ours"  # faithfulness: "ours" (nearest cells, mean of all steps) |
    #                                "released" (bilinear cells, steps weighted by cells changed)
    tie_seed: int | None = None  # faithfulness: equal mask values in a seeded random order
    #                              (None: by cell index, row-major)

    def __post_init__(self):
        if self.method not in ("igos+", "igos++"):
            raise ValueError(f"method must be 'igos+' or 'igos++', not {self.method!r}")
        if self.baseline not in ("blur", "black", "noise"):
            raise ValueError(f"baseline must be 'blur', 'black' or 'noise', not {self.baseline!r}")
        for name, allowed in (("btv", ("ours", "released")), ("combine", ("product", "upsampled")),
                              ("step", ("nesterov", "armijo")),
                              ("noise_seeds", ("per-image", "shared")),
                              ("deletion_metric", ("ours", "released"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        for name in ("size", "ig_iter", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")
        for name in ("lr", "btv_sigma"):  # must be > 0
            if not getattr(self, name) > 0:
                raise ValueError(f"HeatmapConfig {name} must be > 0, not {getattr(self, name)}")
        for name in ("l1", "l2", "l3", "gamma", "momentum", "noise", "single_token_ratio"):
            if not getattr(self, name) >= 0:  # (NaN fails too)
                raise ValueError(f"HeatmapConfig {name} must be >= 0, not {getattr(self, name)}")
        if self.threshold != self.threshold:
            raise ValueError("HeatmapConfig threshold must be a number, not NaN")
        if self.seed < 0:
            raise ValueError(f"HeatmapConfig seed must be >= 0, not {self.seed}")
        if not (0 < self.ls_decay < 1) or self.ls_min <= 0 or self.ls_beta < 0:
            raise ValueError("line search: ls_decay must be in (0, 1), ls_min > 0, ls_beta >= 0")
        check_attention_name(self.attn_implementation)

    def result_fields(self) -> dict:
        """The settings a heatmap depends on: all but ``batch`` (speed and memory only), for
        run-store keys, so a sweep resumed with another batch reuses its finished parts."""
        d = asdict(self)
        del d["batch"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HeatmapConfig":
        """From ``asdict`` output, also of files written before ``batch`` replaced ``chunk``
        (and before the fields of the presets: they take the values those files were made with)."""
        d = dict(d)
        if "chunk" in d:  # path points per backward: 2 (iGOS+) or 4 (iGOS++) images each
            chunk = d.pop("chunk")
            d.setdefault("batch", chunk * (2 if d.get("method", "igos+") == "igos+" else 4))
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown heatmap settings: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def reference_args(cls, **kw) -> "HeatmapConfig":
        """The reference code's ``args.py`` defaults (not those of its README run)."""
        base = dict(l1=0.1, l2=1.0, l3=20.0, gamma=0.2, ig_iter=5, momentum=3.0)
        return cls(**{**base, **kw})

    @classmethod
    def preset(cls, name: str, **kw) -> "HeatmapConfig":
        """A named set of definitions, then ``kw`` on top.

        ``"reference"``: the released code (bytedance/LVLM_Interpretation) as it
        runs: its bilateral TV, the uint8 blur, up(Md)*up(Mi) for iGOS++,
        Nesterov, one noise generator drawn in path order, attention kernels as
        loaded, its deletion/insertion metric (precedence bug fixed), and the
        current release's token rule (position 0 may be selected).
        ``"vlmscope"``: the field defaults (see docs/fidelity.md for each
        difference and its measured effect).
        """
        if name not in PRESETS:
            raise ValueError(f"unknown heatmap preset {name!r}: one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **kw})

    def switches(self) -> dict:
        """The fields where this config differs from the "reference" preset (what a preset
        comparison changes), e.g. ``{"step": "armijo"}``."""
        ref = asdict(HeatmapConfig.preset("reference"))
        return {k: v for k, v in asdict(self).items() if ref[k] != v and k not in _NOT_SWITCHES}


# fields that are settings of a run, not definitions (left out of ``switches``)
_NOT_SWITCHES = ("method", "size", "iterations", "ig_iter", "l1", "l2", "l3", "gamma", "momentum",
                 "lr", "noise", "baseline", "btv_sigma", "threshold", "single_token_ratio", "batch",
                 "seed", "ls_beta", "ls_decay", "ls_min", "tie_seed")

PRESETS = {
    "vlmscope": {},
    "reference": dict(btv="released", blur_uint8=True, combine="upsampled", step="nesterov",
                      noise_seeds="shared", attn_implementation=None, deletion_metric="released",
                      drop_first=False),
}
