"""An independent iGOS+ / iGOS++, written from the released code's description, to check ours.

The released code (bytedance/LVLM_Interpretation: ``main.py``, ``methods.py``
``iGOS_p`` / ``iGOS_pp``, ``methods_helper.py``) as /work/shared/REFERENCES.md
A1 and docs/fidelity.md describe it, for a LLaVA-style model whose processor
gives one ``pixel_values`` tensor (the organism):

- the baseline: the uint8 RGB image blurred with OpenCV ``GaussianBlur``
  semantics (kernel by image width, sigma = kernel - 1, reflect-101 borders,
  rounded to uint8), then both pictures through the model's own processor;
- everything happens on the processor's normalised tensors: a coarse mask
  upsampled bilinearly (align_corners=True) to the tensor's size, path images
  ``phi(A, B, k/N * up(M)) = A * w + B * (1 - w)``, Gaussian noise added to
  them, one forward per path image with all N graphs alive and one backward
  per term, the model's weights frozen (``main.py`` sets requires_grad False);
- S = sum over the selected positions of log softmax (float32) of the logits
  of the whole teacher-forced sequence;
- regulariser L1 mean|1 - M| + L3 BTV + L2 exp(-gamma i) sum (1 - M)^2, BTV =
  1/2 (vertical and horizontal squared mask differences + edge-weighted
  squared differences of the upsampled mask: vertical weights
  exp(-(mean over channels of dI)^2 / sigma), horizontal weights mean over
  channels of exp(-dI^2 / sigma), dI on the normalised image);
- Nesterov: theta_i = M - lr g, M = clip(theta_i + i / (i + momentum) (theta_i - theta_{i-1}), 0, 1);
- iGOS++: terms in the order product-deletion, product-insertion,
  deletion-mask, insertion-mask; the product term with up(Md) * up(Mi); each
  mask's gradient halved, then the regulariser of the coarse product Md * Mi;
  the result is that coarse product.

Noise: one ``torch.Generator`` seeded with ``seed``, a ``randn`` of one
image's tensor shape per path image in path order.

It shares NO function with ``vlmscope.heatmaps``: its own blur, upsampling,
regulariser, objective (the model called directly) and update. Only the
model loading and the prompt (``VLM.prepare``) come from vlmscope.
"""

from __future__ import annotations

import math

import numpy as np
import torch


# ------------------------------------------------------------------- baseline
def kernel_for_width(width: int) -> int:
    """``utils.get_kernel_size``: 101 below 500 px wide, 201 from 500, 301 from 800, 501 from 2000."""
    for limit, k in ((2000, 501), (800, 301), (500, 201)):
        if width >= limit:
            return k
    return 101


def _gauss(k: int, sigma: float) -> np.ndarray:
    x = np.arange(k, dtype=np.float64) - (k - 1) / 2
    g = np.exp(-x * x / (2.0 * sigma * sigma))
    return g / g.sum()


def _blur_axis(a: np.ndarray, g: np.ndarray, axis: int) -> np.ndarray:
    r = len(g) // 2
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="reflect")  # numpy "reflect" = reflect-101 (edge not repeated)
    windows = np.lib.stride_tricks.sliding_window_view(p, len(g), axis=axis)
    return windows @ g


def blur_uint8(rgb: np.ndarray) -> np.ndarray:
    """``cv2.GaussianBlur(rgb, (k, k), sigmaX=k - 1)`` of a uint8 ``[H, W, 3]`` array, as uint8."""
    k = kernel_for_width(rgb.shape[1])
    g = _gauss(k, float(k - 1))
    out = _blur_axis(_blur_axis(rgb.astype(np.float64), g, 1), g, 0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- upsampling
def _bilinear_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """``[n_out, n_in]`` linear interpolation with the end samples aligned (align_corners=True)."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    if n_in == 1 or n_out == 1:
        m[:, 0] = 1.0
        return m
    for i in range(n_out):
        x = i * (n_in - 1) / (n_out - 1)
        lo = min(int(math.floor(x)), n_in - 2)
        t = x - lo
        m[i, lo] += 1.0 - t
        m[i, lo + 1] += t
    return m


class Up:
    """Coarse ``[s, s]`` -> ``[H, W]`` by two interpolation matrices."""

    def __init__(self, s: int, h: int, w: int, dtype=torch.float32):
        self.rows = _bilinear_matrix(h, s).to(dtype)
        self.cols = _bilinear_matrix(w, s).to(dtype)

    def __call__(self, m: torch.Tensor) -> torch.Tensor:
        return self.rows @ m @ self.cols.T


# ---------------------------------------------------------------- regulariser
def btv_released(m: torch.Tensor, up_m: torch.Tensor, img: torch.Tensor, sigma: float) -> torch.Tensor:
    a = (m[:-1, :] - m[1:, :]).pow(2).mean()
    b = (m[:, :-1] - m[:, 1:]).pow(2).mean()
    wa = torch.exp(-(img[:, :-1, :] - img[:, 1:, :]).mean(0) ** 2 / sigma)
    wb = torch.exp(-(img[:, :, :-1] - img[:, :, 1:]) ** 2 / sigma).mean(0)
    bil_a = (wa * (up_m[:-1, :] - up_m[1:, :]).pow(2)).mean()
    bil_b = (wb * (up_m[:, :-1] - up_m[:, 1:]).pow(2)).mean()
    return 0.5 * (a + b + bil_a + bil_b)


# ------------------------------------------------------------------ objective
class Scorer:
    """S(x) for a normalised pixel tensor ``x [3, H, W]``: the model called directly."""

    def __init__(self, model, prompt_ids: torch.Tensor, answer_ids, positions):
        answer = torch.as_tensor(list(answer_ids), dtype=torch.long).reshape(1, -1)
        self.ids = torch.cat([prompt_ids.reshape(1, -1).cpu(), answer], 1).to(model.device)
        self.mask = torch.ones_like(self.ids)
        n = prompt_ids.shape[-1]
        pos = torch.as_tensor(list(positions), dtype=torch.long)
        self.rows = (n - 1 + pos).to(model.device)
        self.targets = answer[0, pos].to(model.device)
        self.model = model
        self.forwards = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        out = self.model(input_ids=self.ids, attention_mask=self.mask,
                         pixel_values=x[None].to(p.dtype))
        self.forwards += 1
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)
        return logp[self.rows, self.targets].sum()


# ------------------------------------------------------------------ the method
DEFAULTS = dict(size=32, iterations=5, ig_iter=10, l1=1.0, l2=0.1, l3=10.0, gamma=1.0,
                momentum=5.0, lr=10.0, noise=0.2, btv_sigma=0.01, seed=0)


def tensors(vlm, pil_image) -> tuple[torch.Tensor, torch.Tensor]:
    """The processor's normalised tensors ``[3, H, W]`` of the image and of its uint8 blur."""
    from PIL import Image

    rgb = np.asarray(pil_image.convert("RGB"))
    blur = Image.fromarray(blur_uint8(rgb))
    ip = vlm.processor.image_processor
    px = [ip(images=im, return_tensors="pt")["pixel_values"][0].float() for im in (pil_image, blur)]
    return px[0].to(vlm.device), px[1].to(vlm.device)


def igos(vlm, prepared, answer_ids, positions, method: str = "igos+", **settings) -> np.ndarray:
    """The coarse mask ``[size, size]`` (low = important) of the released algorithm."""
    c = {**DEFAULTS, **settings}
    unknown = set(c) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown settings {sorted(unknown)}")
    model = vlm.model
    image, blur = tensors(vlm, prepared.image)
    h, w = image.shape[-2:]
    up = Up(c["size"], h, w)
    score = Scorer(model, prepared.inputs["input_ids"], answer_ids, positions)
    gen = torch.Generator(device=image.device).manual_seed(int(c["seed"]))
    n = c["ig_iter"]

    def integrated(a, b, up_m):
        """1/N sum_k S(phi(a, b, k/N up_m) + noise): N graphs alive, then one backward."""
        total = 0.0
        for k in range(1, n + 1):
            wk = up_m * (k / n)
            x = a * wk + b * (1 - wk)
            if c["noise"]:
                x = x + c["noise"] * torch.randn((1, *x.shape), generator=gen, device=x.device,
                                                 dtype=torch.float32)[0].to(x.dtype)
            total = total + score(x)
        total = total / n
        total.backward()
        return float(total.detach())

    def regularise(m, it):
        l2 = c["l2"] * math.exp(-c["gamma"] * it)
        return (c["l1"] * (1 - m).abs().mean() + c["l3"] * btv_released(m, up(m), image, c["btv_sigma"])
                + l2 * ((1 - m) ** 2).sum())

    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        if method == "igos+":
            m = torch.ones(c["size"], c["size"], requires_grad=True, device=image.device)
            theta_old = torch.zeros(1, device=image.device)
            for it in range(c["iterations"]):
                integrated(image, blur, up(m))
                g = m.grad.clone()
                m.grad.zero_()
                integrated(blur, image, up(m))
                g -= m.grad
                m.grad.zero_()
                regularise(m, it).backward()
                g += m.grad
                m.grad.zero_()
                e = it / (it + c["momentum"])
                with torch.no_grad():
                    theta = m - c["lr"] * g
                    m.copy_((theta + e * (theta - theta_old)).clamp(0, 1))
                    theta_old = theta
            return m.detach().cpu().numpy()
        if method == "igos++":
            md = torch.ones(c["size"], c["size"], requires_grad=True, device=image.device)
            mi = torch.ones(c["size"], c["size"], requires_grad=True, device=image.device)
            old_d = old_i = torch.zeros(1, device=image.device)
            for it in range(c["iterations"]):
                integrated(image, blur, up(md) * up(mi))
                gd, gi = md.grad.clone(), mi.grad.clone()
                md.grad.zero_()
                mi.grad.zero_()
                integrated(blur, image, up(md) * up(mi))
                gd -= md.grad
                gi -= mi.grad
                md.grad.zero_()
                mi.grad.zero_()
                integrated(image, blur, up(md))
                gd += md.grad
                md.grad.zero_()
                integrated(blur, image, up(mi))
                gi -= mi.grad
                mi.grad.zero_()
                gd, gi = gd / 2, gi / 2
                regularise(md * mi, it).backward()
                gd += md.grad
                gi += mi.grad
                md.grad.zero_()
                mi.grad.zero_()
                e = it / (it + c["momentum"])
                with torch.no_grad():
                    td, ti = md - c["lr"] * gd, mi - c["lr"] * gi
                    md.copy_((td + e * (td - old_d)).clamp(0, 1))
                    mi.copy_((ti + e * (ti - old_i)).clamp(0, 1))
                    old_d, old_i = td, ti
            return (md * mi).detach().cpu().numpy()
        raise ValueError(f"method must be 'igos+' or 'igos++', not {method!r}")
    finally:
        for p, f in zip(model.parameters(), flags):
            p.grad = None
            p.requires_grad_(f)


# ----------------------------------------------------------------- questions
STOP = {"the", "and", "of", "a", "an", "this", "that", "is", "with"}


@torch.no_grad()
def select_positions(vlm, prepared, answer_ids) -> list[int]:
    """The current release's rule (``utils.find_keywords``): log p(y_t | image) - log p(y_t |
    blur) > 1 and not a stop token (stop list from the tokenizer: special tokens, punctuation
    or whitespace, the words above); a one-token answer kept when p(y | blur) <= p(y | image) / 2."""
    import unicodedata

    ids = [int(t) for t in answer_ids]
    image, blur = tensors(vlm, prepared.image)
    every = Scorer(vlm.model, prepared.inputs["input_ids"], ids, range(len(ids)))
    lp = []
    for x in (image, blur):
        out = vlm.model(input_ids=every.ids, attention_mask=every.mask,
                        pixel_values=x[None].to(next(vlm.model.parameters()).dtype))
        logp = torch.log_softmax(out.logits[0].float(), dim=-1)
        lp.append(logp[every.rows, every.targets].cpu().numpy())
    if len(ids) == 1:
        return [0] if math.exp(lp[1][0]) <= 0.5 * math.exp(lp[0][0]) else []
    tok = vlm.tokenizer
    special = set(tok.all_special_ids or [])
    out = []
    for t, i in enumerate(ids):
        text = tok.decode([i]).strip().lower()
        stop = (i in special or not text or text in STOP
                or all(unicodedata.category(ch)[0] in "PSZC" for ch in text))
        if not stop and lp[0][t] - lp[1][t] > 1.0:
            out.append(t)
    return out


def organism_questions(vlm, n_per_kind: int = 3, kinds=("color", "shape", "where"), seed: int = 0,
                       max_scenes: int = 40) -> list[dict]:
    """A fixed set: the first ``n_per_kind`` synthetic-world questions of each kind (scenes
    from ``seed``) that the model answers right and where ``select_positions`` selects something."""
    from vlmscope.datasets.synthetic import World

    out, count = [], {k: 0 for k in kinds}
    for scene, qs in World().samples(max_scenes, seed, kinds=kinds):
        for q in qs:
            if count[q.kind] >= n_per_kind:
                continue
            prepared = vlm.prepare(scene.image, q.text)
            gen = vlm.generate(prepared, max_new_tokens=8)
            if gen.text != q.answer:
                continue
            ids = [int(t) for t in vlm.answer_ids(gen)]
            pos = select_positions(vlm, prepared, ids)
            if not pos:
                continue
            out.append({"kind": q.kind, "question": q.text, "answer": q.answer,
                        "prepared": prepared, "answer_ids": ids, "positions": pos,
                        "target": None if q.target is None else q.target.mask})
            count[q.kind] += 1
        if all(v >= n_per_kind for v in count.values()):
            return out
    raise RuntimeError(f"found only {count} questions in {max_scenes} scenes")
