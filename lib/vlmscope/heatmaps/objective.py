"""The ``Objective``: teacher-forced log-probabilities of chosen answer positions as a
function of original-pixel images (gradients reach the images)."""

from __future__ import annotations

import torch

from ..models import at_least_float32


def _batched(inputs: dict, pixel_list: list[dict]) -> dict:
    """Stack per-image pixel entries along dim 0; repeat the other ``[1, ...]`` entries."""
    b = len(pixel_list)
    out = {}
    for k, v in inputs.items():
        if k in pixel_list[0]:
            out[k] = torch.cat([p[k] for p in pixel_list], 0)
        elif torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == 1:
            out[k] = v.expand(b, *v.shape[1:]).contiguous() if b > 1 else v
        else:
            out[k] = v
    return out


class Objective:
    """Teacher-forced log-probabilities of chosen answer positions, as a function of images.

    ``positions`` index the answer (0 = its first token). ``logprobs(images)``
    returns ``[B, n_positions]`` for a batch of original-pixel images
    ``[B, 3, H, W]``; gradients flow back to the images.
    """

    def __init__(self, vlm, prepared, answer_ids: torch.Tensor, positions):
        self.vlm = vlm
        self.prepared = prepared
        self.answer_ids = torch.as_tensor(answer_ids, dtype=torch.long).reshape(-1).cpu()
        self.positions = torch.as_tensor(list(positions), dtype=torch.long)
        if self.positions.numel() == 0:
            raise ValueError("no answer positions to score")
        if int(self.positions.max()) >= len(self.answer_ids) or int(self.positions.min()) < 0:
            raise IndexError(f"positions {self.positions.tolist()} outside an answer of "
                             f"{len(self.answer_ids)} tokens")
        n = prepared.input_ids.shape[1]
        # causal model: answer tokens after the last scored one change nothing, so they are left out
        needed = self.answer_ids[:int(self.positions.max())]
        self.inputs = vlm.adapter.extend_inputs(prepared.inputs, needed[None].to(vlm.device))
        self.rows = (n - 1 + self.positions).to(vlm.device)
        self.targets = self.answer_ids[self.positions].to(vlm.device)
        self.forwards = 0  # images run through the model (for benchmarks)

    def logprobs(self, images: torch.Tensor, noise: float = 0.0, seeds=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, n_positions]`` log-probabilities; ``noise``: Gaussian std added to the model's
        (normalised) pixel inputs, drawn with ``seeds`` (one int per image) from a generator
        of each image's own, else from ``generator`` (image after image), else from torch's
        global generator."""
        adapter = self.vlm.adapter
        pix = [adapter.pixel_inputs(img, self.inputs) for img in images]
        if noise:
            if seeds is not None and len(seeds) != len(pix):
                raise ValueError(f"{len(seeds)} seeds for {len(pix)} images")
            gens = ([torch.Generator(device=images.device).manual_seed(int(sd)) for sd in seeds]
                    if seeds is not None else [generator] * len(pix))
            pix = [{k: (v + noise * torch.randn(v.shape, generator=g, device=v.device,
                                                dtype=torch.float32).to(v.dtype)
                        if v.is_floating_point() else v) for k, v in p.items()}
                   for p, g in zip(pix, gens)]
        batch = _batched(self.inputs, pix)
        logits = self.vlm.model(**batch, logits_to_keep=self.rows).logits  # [B, n_pos, V]
        self.forwards += len(images)
        logp = torch.log_softmax(at_least_float32(logits), dim=-1)
        return logp.gather(-1, self.targets.expand(len(images), -1)[..., None])[..., 0]

    def score(self, images: torch.Tensor, **kw) -> torch.Tensor:
        """``[B]`` sum of the selected log-probabilities (the reference's S)."""
        return self.logprobs(images, **kw).sum(-1)
