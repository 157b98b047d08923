"""ipywidgets explorers: controls wired to library results and ``plots`` figures.

Each explorer is an ``Explorer``: ``.widget`` is the ipywidgets box to show
(the explorer displays as it, so it can end a notebook cell), ``.controls``
holds the sliders and toggles by name, ``.update(**values)`` sets several
controls and redraws once, and ``.state`` keeps what was drawn last (the
values, the text, the figure), so a test or a reader can check it.

What a reader sees first: a one-line caption saying what to try
(``.caption``), the options in a column of wide controls whose labels say
what their numbers mean ("layer (0 = first of 4)"), action buttons
(``button_style``) apart from the options, and a first view that already
shows an effect.

Nothing is computed here: maps, localisation and knockout generation come from
``maps``, ``attention`` and ``knockout``; figures from ``plots``.

Over 450 lines because it holds every explorer (one short class each, all on
the ``Explorer`` contract above); a split by study would be the next step.

>>> rec = record_generation(vlm, scene.image, maps="heads")          # doctest: +SKIP
>>> ex = map_explorer(rec, masks={o.name: o.mask for o in scene.objects})  # doctest: +SKIP
>>> ex.update(layer=2, head="mean", step=1)                          # doctest: +SKIP
>>> ex.state["localisation"]                                         # doctest: +SKIP
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import matplotlib.pyplot as plt

from . import plots
from .attention import KNOCKOUTS, from_layer
from .datasets.synthetic import DESCRIBE
from .judge import default_judge
from .knockout import generate_with_knockouts
from .maps import localisation


TRACK_PX = 300  # a slider's track (and a box's field): room to aim at one of many values
READOUT_PX = 90  # the value shown right of a slider


def _wide(cls, **kw):
    """An ipywidgets control whose sliders redraw on release (``continuous_update=False``);
    ``Explorer`` gives it its width and a label column wide enough for every description."""
    if issubclass(cls, (widgets.IntSlider, widgets.FloatSlider, widgets.SelectionSlider,
                        widgets.Text)):
        kw.setdefault("continuous_update", False)
    return cls(style={"description_width": "initial"}, **kw)


def _lay_out(controls) -> None:
    """One label column for ``controls`` (wide enough for the longest description, at about
    7.5 px a character of the notebook's 13 px font), then a ``TRACK_PX`` track or field."""
    labelled = [c for c in controls if getattr(c, "description", "")]
    if not labelled:
        return
    label = max(int(7.5 * len(c.description)) + 24 for c in labelled)
    for c in labelled:
        c.style.description_width = f"{label}px"
        if not isinstance(c, (widgets.ToggleButtons, widgets.Checkbox, widgets.Button)):
            c.layout.width = f"{label + TRACK_PX + READOUT_PX}px"


def _show(fig) -> None:
    """Display a figure in the current output (when a kernel is there) and release it."""
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is not None:
        display(fig)
    plt.close(fig)


class Explorer:
    """Named controls above an output area; any control change redraws.

    Subclasses implement ``draw()``: read ``self.controls``, call library and
    plot functions, fill ``self.state``; whatever it displays lands in
    ``self.output``.
    """

    def __init__(self, controls: dict, extra: tuple = (), caption: str = "",
                 options: tuple | None = None):
        """``controls`` by name; ``options``: the names shown in the options column (default
        all; the others are placed by the subclass in ``extra``); ``caption``: what to try."""
        self.controls = dict(controls)
        self.output = widgets.Output()
        self.state: dict = {}
        self._held = False
        self.caption = widgets.HTML(f"<b>Try:</b> {html.escape(caption)}" if caption else "")
        shown = [self.controls[n] for n in (options if options is not None else self.controls)]
        _lay_out(shown)
        self.widget = widgets.VBox([self.caption, widgets.VBox(shown), *extra, self.output])
        for name, control in self.controls.items():
            control.observe(lambda change, name=name: self._changed(name, change), names="value")

    def _changed(self, name: str, change) -> None:
        if not self._held:
            self.refresh()

    def update(self, **values) -> "Explorer":
        """Set controls by name (e.g. ``layer=3, head="mean"``) and redraw once."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise KeyError(f"no control named {', '.join(sorted(unknown))}; "
                           f"this explorer has: {', '.join(self.controls)}")
        self._held = True
        try:
            for name, value in values.items():
                control = self.controls[name]
                lo, hi = getattr(control, "min", None), getattr(control, "max", None)
                if lo is not None and not lo <= value <= hi:
                    raise ValueError(f"{name}={value!r} is out of range {lo}..{hi}")
                options = getattr(control, "options", None)
                if options is not None:
                    allowed = [o[1] if isinstance(o, tuple) else o for o in options]
                    if value not in allowed:
                        raise ValueError(f"{name}={value!r} is not one of {allowed}")
                control.value = value
        finally:
            self._held = False
        self.refresh()
        return self

    def refresh(self) -> None:
        self.output.clear_output(wait=True)
        with self.output:
            self.draw()

    def draw(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


# --------------------------------------------------------------------- maps
class MapExplorer(Explorer):
    """Layer, head and generated-token sliders over one recorded generation."""

    def __init__(self, recorded, masks: dict | None = None, rings: int = 0,
                 layer: int | None = None):
        self.recorded = recorded
        self.masks = dict(masks or {})
        self.rings = rings
        tokens = recorded.generation.tokens
        L = recorded.maps().shape[0]
        if not tokens:
            raise ValueError("the model generated no tokens: there is no attention row to show")
        heads = ["mean"] + list(range(recorded.n_heads))
        controls = {
            "layer": _wide(widgets.IntSlider, value=L // 2 if layer is None else layer, min=0,
                           max=L - 1, description=f"layer (0 = first of {L})"),
            "head": _wide(widgets.SelectionSlider, options=heads, value="mean",
                          description=(f"head ('mean' = all {recorded.n_heads} averaged)"
                                       if len(heads) > 1 else "head (only their mean recorded)"),
                          disabled=len(heads) == 1),
            "step": _wide(widgets.SelectionSlider, options=[(f"{s}: {t}", s)
                                                            for s, t in enumerate(tokens)],
                          value=0, description="generated token (step: word)"),
        }
        caption = "drag the layer, then the token: where does the word's attention land?"
        if masks:
            caption += " The table scores the map on each object (ratio 1 = uniform)."
        super().__init__(controls, caption=caption)
        self.refresh()

    def draw(self) -> None:
        layer, head, step = (self.controls[k].value for k in ("layer", "head", "step"))
        token = self.recorded.generation.tokens[step]
        values = self.recorded.map(layer, step, head)  # [n_image]
        who = "heads averaged" if head == "mean" else f"head {head}"
        fig = plots.attention_map(self.recorded.prepared.image, self.recorded.prepared.geometry,
                                  values, title=f"{token!r} (step {step}), layer {layer}, {who}")
        table = None
        if self.masks:
            names = list(self.masks)
            rows = localisation(self.recorded, [(step, self.masks[n]) for n in names],
                                rings=self.rings, head=head)
            rows = rows[rows.layer == layer] if len(rows) else rows
            table = (rows.assign(object=[names[w] for w in rows.get("word", [])])
                     .set_index("object")[["pointing", "mass_in_mask", "mask_share", "ratio"]]
                     if len(rows) else None)
        self.state = {"layer": layer, "head": head, "step": step, "token": token,
                      "values": values, "figure": fig, "localisation": table}
        _show(fig)
        if table is not None:
            from IPython.display import display

            print("localisation of this map (ratio 1.0 = a uniform map):")
            display(table.round(3))


def map_explorer(recorded, masks: dict | None = None, rings: int = 0,
                 layer: int | None = None) -> MapExplorer:
    """Slide through layers, heads and generated tokens of ``recorded``'s attention maps.

    Parameters
    ----------
    recorded : a ``maps.Recorded`` (``record_generation``); record with
        ``maps="heads"`` to get the head slider (else only the head mean).
    masks : optional ``{object name: [H, W] bool mask}`` in original pixels;
        each drawn map is scored against every mask (``maps.localisation``).
    rings : buffer rings around each object's tokens for the scores.
    layer : the layer shown first (default: the middle one).
    """
    return MapExplorer(recorded, masks, rings, layer)


# ----------------------------------------------------------------- knockout
class KnockoutExplorer(Explorer):
    """Pick a cut and a start layer; regenerate the description under it."""

    LABELS = {"img->gen": "image → generated", "img->txt": "image → question",
              "img->txt+gen": "image → both"}
    TIPS = {"img->gen": "the generated words cannot attend to the image tokens",
            "img->txt": "the question's tokens cannot attend to the image tokens",
            "img->txt+gen": "neither the question nor the generated words attend to the image"}

    def __init__(self, vlm, image, question: str = DESCRIBE,
                 max_new_tokens: int = 48, auto: bool = False, judge=None,
                 cut: str | None = None, start: int = 0):
        self.vlm = vlm
        self.max_new_tokens = max_new_tokens
        self.judge = judge or default_judge(vlm, image)
        self.prepared = vlm.prepare(image, question)
        self.baseline = vlm.generate(self.prepared, max_new_tokens=max_new_tokens).text
        self._texts: dict = {}  # (cut, start) -> generated text, so no setting is generated twice
        L = vlm.adapter.n_layers
        if cut is None:  # open on the first cut that changes the description at ``start``
            cut = next((c for c in KNOCKOUTS if self._generate(c, start) != self.baseline),
                       next(iter(KNOCKOUTS)))
        controls = {
            "cut": _wide(widgets.ToggleButtons, options=[(self.LABELS.get(k, k), k) for k in KNOCKOUTS],
                         value=cut, tooltips=[self.TIPS.get(k, k) for k in KNOCKOUTS],
                         description="attention cut (edge removed)"),
            "start": _wide(widgets.IntSlider, value=start, min=0, max=L,
                           description=f"cut from layer (0 = first of {L}; {L} = no cut)"),
            "auto": widgets.Checkbox(value=auto, description="regenerate on every change",
                                     indent=False),
        }
        self.controls_note = widgets.HTML()
        self.button = widgets.Button(description="regenerate", icon="refresh",
                                     button_style="primary",
                                     tooltip="generate the description under the chosen cut")
        self.button.on_click(lambda _: self.refresh())
        self.texts = widgets.HTML()
        actions = widgets.HBox([self.button, controls["auto"]],
                               layout=widgets.Layout(margin="8px 0 4px 0", align_items="center"))
        caption = ("move the start layer up until the description comes back; compare the "
                   "three cuts (press regenerate after each change).")
        super().__init__(controls, extra=(actions, self.texts), caption=caption,
                         options=("cut", "start"))
        self.refresh()

    def _generate(self, cut: str, start: int) -> str:
        key = (cut, start)
        if key not in self._texts:
            L = self.vlm.adapter.n_layers
            [self._texts[key]] = generate_with_knockouts(
                self.vlm, self.prepared, [from_layer(KNOCKOUTS[cut], start, L)], self.max_new_tokens)
        return self._texts[key]

    def _changed(self, name: str, change) -> None:
        if self._held:
            return
        if self.controls["auto"].value:
            self.refresh()
        elif name != "auto":
            self.texts.value = self._html(self.state.get("text", ""), stale=True)

    def draw(self) -> None:
        cut, start = self.controls["cut"].value, self.controls["start"].value
        text = self._generate(cut, start)
        scores = self.judge.compare(text, self.baseline)
        self.state = {"cut": cut, "start": start, "text": text, "baseline": self.baseline,
                      **scores}
        self.texts.value = self._html(text)

    def _html(self, text: str, stale: bool = False) -> str:
        cut, start = self.state.get("cut", "?"), self.state.get("start", "?")
        L = self.vlm.adapter.n_layers
        l = start - 1 if isinstance(start, int) else "?"
        name = f"{self.LABELS[cut]} ({cut})" if cut in self.LABELS else cut
        head = (f"{name} cut in layers {start}..{L - 1} (the paper's l = {l}: layers > l)"
                if start != L else f"{name}: no layer cut")
        note = " <i>(controls changed: press regenerate)</i>" if stale else ""
        f1 = self.state.get("f1")
        score = f"object F1 vs baseline: {f1:.2f}" if f1 is not None else ""
        cell = "<td style='vertical-align:top;padding:4px 12px;max-width:28em'>"
        return (f"<table><tr>{cell}<b>baseline (no cut)</b><br>{html.escape(self.baseline)}</td>"
                f"{cell}<b>{html.escape(head)}</b>{note}<br>{html.escape(text)}<br>"
                f"<small>{score}</small></td></tr></table>")


def knockout_explorer(vlm, image, question: str = DESCRIBE, max_new_tokens: int = 48,
                      auto: bool = False, judge=None, cut: str | None = None,
                      start: int = 0) -> KnockoutExplorer:
    """Regenerate ``image``'s description live under a knockout, beside the baseline.

    Controls: the cut (``attention.KNOCKOUTS``), the first cut layer (0 = all,
    ``L`` = none), "regenerate on change", and a regenerate button. The text
    is what ``knockout.generate_with_knockouts`` gives for that setting;
    ``state["f1"]`` is the judge's object F1 against the baseline (the
    un-knocked description). It opens on ``cut`` from layer ``start``; with
    ``cut=None``, on the first cut (in ``KNOCKOUTS`` order) whose text at
    ``start`` differs from the baseline, so the first view shows an effect
    (the first cut when none does).
    """
    return KnockoutExplorer(vlm, image, question, max_new_tokens, auto, judge, cut, start)


# ---------------------------------------------------------------- fractions
class FractionsExplorer(Explorer):
    """Image and token sliders over tidy attention fractions."""

    def __init__(self, fractions):
        if "image_id" not in fractions:
            fractions = fractions.assign(image_id=0)
        self.fractions = fractions
        ids = sorted(int(i) for i in fractions.image_id.unique())
        controls = {
            "image_id": _wide(widgets.SelectionSlider, options=ids, value=ids[0],
                              description=f"image ({len(ids)} recorded)"),
            "step": _wide(widgets.SelectionSlider, options=self._token_options(ids[0]),
                          description="generated token (step: word)"),
        }
        super().__init__(controls, caption="step through the generated tokens: in which layers "
                                           "does a word give the image most of its attention?")
        self.refresh()

    def _token_options(self, image_id: int) -> list[tuple[str, int]]:
        d = self.fractions[self.fractions.image_id == image_id].drop_duplicates("step")
        return [(f"{s}: {t}", int(s)) for s, t in zip(d.step, d.token)]

    def _changed(self, name: str, change) -> None:
        if self._held:
            return
        if name == "image_id":  # new image: its own tokens, keeping the step where it exists
            self._held = True
            try:
                self._set_tokens(change["new"])
            finally:
                self._held = False
        self.refresh()

    def _set_tokens(self, image_id: int) -> None:
        step = self.controls["step"]
        old = step.value
        options = self._token_options(image_id)
        step.options = options
        steps = [s for _, s in options]
        step.value = old if old in steps else steps[-1]

    def update(self, **values) -> "Explorer":
        if "image_id" in values:  # the token options depend on the image
            self._held = True
            try:
                self.controls["image_id"].value = values["image_id"]
                self._set_tokens(values["image_id"])
            finally:
                self._held = False
        return super().update(**values)

    def draw(self) -> None:
        image_id, step = self.controls["image_id"].value, self.controls["step"].value
        f = self.fractions
        rows = f[(f.image_id == image_id) & (f.step == step)].sort_values("layer")
        token = rows.token.iloc[0]
        fig = plots.token_fractions(rows, title=f"image {image_id}, token {token!r} (step {step})")
        self.state = {"image_id": image_id, "step": step, "token": token, "rows": rows,
                      "figure": fig}
        _show(fig)


def fractions_explorer(fractions) -> FractionsExplorer:
    """One generated token's attention split per layer; slide over images and tokens.

    ``fractions``: tidy rows from ``Recorded.fractions()`` (columns layer,
    step, token, image, query_no_bos, bos, generated), with ``image_id`` when
    several images are pooled.
    """
    return FractionsExplorer(fractions)




# ------------------------------------------------------------------ heatmaps
class HeatmapExplorer(Explorer):
    """iGOS+ on one question: baseline and regulariser weights, iteration by iteration.

    Changing the baseline or a weight reruns ``heatmaps.igos`` (cached per
    setting); the iteration slider walks through the masks it kept.
    """

    L1 = (0.0, 0.1, 1.0, 10.0)
    L3 = (0.0, 1.0, 10.0, 50.0)
    BASELINES = {"blur": "the picture blurred", "black": "a black picture",
                 "noise": "random noise"}

    def __init__(self, vlm, prepared, answer=None, target=None, config=None, computed=None):
        from .heatmaps import HeatmapConfig

        self.vlm, self.prepared, self.target = vlm, prepared, target
        self.answer = answer if answer is not None else vlm.generate(prepared)
        self.config = config or HeatmapConfig()
        self._cache: dict = {}
        c = self.config
        if computed is not None:  # a result the caller already has (with its history): no rerun
            if computed.config != c or (computed.mask is not None and not computed.history):
                raise ValueError("computed= must be igos(..., config, keep_history=True) of this config")
            self._cache[(c.baseline, c.l1, c.l3)] = computed
        n = max(c.iterations, 1)
        controls = {
            "baseline": _wide(widgets.Dropdown, options=[(label, b) for b, label in self.BASELINES.items()],
                              value=c.baseline, description="baseline (deleted pixels become)"),
            "l1": _wide(widgets.SelectionSlider, options=sorted(set(self.L1) | {c.l1}), value=c.l1,
                        description="L1 weight (keeps the region small)"),
            "l3": _wide(widgets.SelectionSlider, options=sorted(set(self.L3) | {c.l3}), value=c.l3,
                        description="L3 weight (keeps it smooth: BTV)"),
            "iteration": _wide(widgets.IntSlider, min=1, max=n, value=n,
                               description=f"iteration (1 to {n})"),
        }
        super().__init__(controls, caption="set L1 or L3 to 0 or pick the black baseline (each "
                                           "new setting reruns iGOS+, a few seconds); slide the "
                                           "iteration to watch the mask form.")
        self.refresh()

    def heatmap(self, baseline: str, l1: float, l3: float):
        """The (cached) iGOS result for one setting of the controls."""
        from dataclasses import replace

        from .heatmaps import igos

        key = (baseline, l1, l3)
        if key not in self._cache:
            cfg = replace(self.config, baseline=baseline, l1=l1, l3=l3)
            self._cache[key] = igos(self.vlm, self.prepared, self.answer, cfg, keep_history=True)
        return self._cache[key]

    def draw(self) -> None:
        from .heatmaps import plausibility, upsample

        import torch

        v = {k: c.value for k, c in self.controls.items()}
        hm = self.heatmap(v["baseline"], v["l1"], v["l3"])
        self.state = {**v, "selected": [hm.selection.tokens[i] for i in hm.selection.positions],
                      "skipped": hm.skipped}
        if hm.mask is None:
            print(f"skipped: {hm.skipped}")
            return
        w, h = hm.image_size
        mask = hm.history[v["iteration"] - 1]
        importance = 1.0 - upsample(torch.from_numpy(mask).float(), h, w).numpy()
        title = (f"iteration {v['iteration']}: explains {self.state['selected']} "
                 f"({v['baseline']} baseline, L1 {v['l1']:g}, L3 {v['l3']:g})")
        if self.target is not None:
            pl = plausibility(importance, self.target)
            self.state["plausibility"] = pl
            title += f"\nmass in target {pl['mass']:.2f} (area {pl['area']:.2f}), pointing {pl['pointing']}"
        fig = plots.heatmap(self.prepared.image, importance, self.target, title=title)
        self.state.update(importance=importance, figure=fig)
        _show(fig)


def heatmap_explorer(vlm, prepared, answer=None, target=None, config=None,
                     computed=None) -> HeatmapExplorer:
    """iGOS+ heatmap of one answer with baseline / L1 / L3 / iteration controls.

    ``computed``: the ``igos(..., config, keep_history=True)`` result already
    made for ``config``, shown first without recomputing it.
    """
    return HeatmapExplorer(vlm, prepared, answer, target, config, computed)


# --------------------------------------------------------------------- lens
class LensExplorer(Explorer):
    """A layer slider over the picture, each patch showing its logit-lens top word."""

    def __init__(self, result, prepared, highlight=None, title: str = ""):
        self.result, self.prepared, self.highlight, self.title = result, prepared, highlight, title
        L = result.n_layers
        controls = {"layer": _wide(widgets.IntSlider, min=0, max=L - 1, value=L - 1,
                                   description=f"layer (0 = first of {L}; {L - 1} = the output)")}
        caption = "slide down from the last layer: where do the patches stop reading as words?"
        if highlight is not None and len(highlight):
            caption = ("slide down from the last layer: from which layer on do the red words on "
                       "the boxed object name its colour or shape?")
        super().__init__(controls, caption=caption)
        self.refresh()

    def draw(self) -> None:
        layer = self.controls["layer"].value
        tokens = self.result.top_tokens(layer)
        fig = plots.lens_tokens(self.prepared.image, self.prepared.geometry, tokens, self.highlight,
                                title=f"{self.title} layer {layer}: each patch's top word".strip())
        self.state = {"layer": layer, "tokens": tokens, "figure": fig}
        _show(fig)


def lens_explorer(result, prepared, highlight=None, title: str = "") -> LensExplorer:
    """Slide over layers of an ``image_lens`` result drawn on the image."""
    return LensExplorer(result, prepared, highlight, title)


# -------------------------------------------------------------- compression
class CompressionExplorer(Explorer):
    """Ask one image a question from its pruned describe-prompt cache (``compression.answer``)."""

    VARIANTS = {"both": "question + top-K image tokens", "query": "question tokens only",
                "image": "top-K image tokens only", "full": "the whole cache (no pruning)",
                "direct": "no cache: the question asked directly"}

    def __init__(self, vlm, items, config=None, k_frac: float = 0.05,
                 question: str = "how many objects are there ?"):
        from . import compression as C

        self.vlm, self.items = vlm, list(items)
        self.config = config or C.CompressionConfig()
        self.contexts: dict = {}  # image -> its describe run, made once when first shown
        n = len(self.items)
        controls = {
            "image": _wide(widgets.IntSlider, value=0, min=0, max=n - 1,
                           description=f"image (0 = first of {n})"),
            "k_frac": _wide(widgets.FloatSlider, value=k_frac, min=0.01, max=1.0, step=0.01,
                            readout_format=".0%", description="K (share of image tokens kept)"),
            "variant": _wide(widgets.Dropdown, value="both", description="what the cache keeps",
                             options=[(self.VARIANTS.get(v, v), v) for v in C.VARIANTS]),
            "question": _wide(widgets.Text, value=question, description="question"),
        }
        self.text = widgets.HTML()
        super().__init__(controls, extra=(self.text,),
                         caption="lower K, or keep only the question or only the image tokens: "
                                 "when does the answer change?")
        self.refresh()

    def draw(self) -> None:
        from . import compression as C

        values = {name: c.value for name, c in self.controls.items()}
        i = values["image"]
        if i not in self.contexts:
            self.contexts[i] = C.describe(self.vlm, self.items[i].image, self.config)
        ctx = self.contexts[i]
        a = C.answer(self.vlm, ctx, values["question"], values["variant"], values["k_frac"],
                     self.config)
        self.state = {**values, "text": a.text, "kept_tokens": a.kept_tokens,
                      "full_tokens": a.full_tokens, "k": a.k,
                      "description": ctx.generation.text}
        objects = ", ".join(o.name for o in self.items[i].objects)
        self.text.value = (f"<b>objects</b>: {html.escape(objects)}<br><b>description</b>: "
                           f"{html.escape(ctx.generation.text)}<br><b>{values['variant']} at K = "
                           f"{values['k_frac']:.0%}</b>: {html.escape(repr(a.text))} ({a.kept_tokens} "
                           f"of {a.full_tokens} tokens kept, {a.k} image tokens per layer)")


def compression_explorer(vlm, items, config=None, k_frac: float = 0.05,
                         question: str = "how many objects are there ?") -> CompressionExplorer:
    """Pick an image, K, a variant and a question; the answer comes from that image's cached
    description run (``compression.describe``, made once per image) pruned as chosen."""
    return CompressionExplorer(vlm, items, config, k_frac, question)


__all__ = ["Explorer", "MapExplorer", "KnockoutExplorer", "FractionsExplorer", "HeatmapExplorer",
           "LensExplorer", "CompressionExplorer", "map_explorer", "knockout_explorer",
           "fractions_explorer", "heatmap_explorer", "lens_explorer", "compression_explorer"]
