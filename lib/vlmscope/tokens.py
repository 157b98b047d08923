"""Token groups and image-token geometry.

``TokenGroups`` says which sequence positions are image tokens, query tokens
(every non-image prompt token, BOS included) and generated tokens.
``TokenGeometry`` says, for every image token, which view and grid cell it
belongs to and which box of the ORIGINAL image it covers, so an object mask
becomes a token set and a per-token value becomes a picture.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch


class EmptyMaskError(ValueError):
    """A mask selects no pixel, or no image token the model sees."""


@dataclass(frozen=True)
class TokenGroups:
    """Positions of each token group in one sequence (absolute, 0-based).

    Attributes
    ----------
    image : ``[n_image]`` positions of image tokens, in sequence order.
    query : ``[n_query]`` positions of non-image prompt tokens (BOS included).
    bos : positions of BOS tokens (a subset of ``query``; may be empty).
    generated : positions of generated tokens (empty before generation).
    prompt_length : number of prompt tokens (image + query).
    """

    image: torch.Tensor
    query: torch.Tensor
    bos: torch.Tensor
    generated: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    prompt_length: int = 0

    @classmethod
    def from_ids(cls, input_ids: torch.Tensor, image_token_id: int, bos_token_id: int | None,
                 attention_mask: torch.Tensor | None = None) -> "TokenGroups":
        """Groups of a single prompt ``input_ids [T]`` (or ``[1, T]``); padding excluded."""
        ids = input_ids.reshape(-1)
        keep = torch.ones_like(ids, dtype=torch.bool)
        if attention_mask is not None:
            keep = attention_mask.reshape(-1).bool()
        pos = torch.arange(ids.numel())
        is_img = (ids == image_token_id) & keep
        query = pos[~is_img & keep]
        bos = pos[(ids == bos_token_id) & keep] if bos_token_id is not None else pos[:0]
        return cls(image=pos[is_img], query=query, bos=bos, prompt_length=int(keep.sum()))

    def with_generated(self, n: int) -> "TokenGroups":
        """The same groups after ``n`` tokens were generated after the prompt."""
        start = int(max(self.image.max().item() if self.image.numel() else -1,
                        self.query.max().item() if self.query.numel() else -1)) + 1
        return replace(self, generated=torch.arange(start, start + n))

    @property
    def query_without_bos(self) -> torch.Tensor:
        return self.query[~torch.isin(self.query, self.bos)]

    @property
    def length(self) -> int:
        return self.prompt_length + int(self.generated.numel())

    def mask(self, group: str, length: int | None = None) -> torch.Tensor:
        """Boolean ``[length]`` mask of a group ("image", "query", "bos", "generated")."""
        length = length or self.length
        out = torch.zeros(length, dtype=torch.bool)
        out[getattr(self, group)] = True
        return out


@dataclass(frozen=True)
class TokenGeometry:
    """Where each image token looks in the original image.

    Attributes
    ----------
    boxes : ``[n_image, 4]`` float (x0, y0, x1, y1) in original pixels, clipped
        to the image; a token covering only padding has an empty box.
    views : ``[n_image]`` view index (0 = the base/only view).
    cells : ``[n_image, 2]`` (row, col) in its view's grid; -1 for tokens with
        no grid cell (CLS, row-end newline, separators).
    grids : per view, the (rows, cols) of its grid.
    image_size : (width, height) of the original image.
    """

    boxes: np.ndarray
    views: np.ndarray
    cells: np.ndarray
    grids: tuple[tuple[int, int], ...]
    image_size: tuple[int, int]
    note: str = ""

    def __len__(self) -> int:
        return len(self.boxes)

    def tokens_for_mask(self, mask: np.ndarray, rings: int = 0, view: int | None = 0,
                        min_overlap: float = 0.0, allow_empty: bool = False) -> np.ndarray:
        """Indices (into the image tokens) whose boxes overlap a mask, plus buffer rings.

        Parameters
        ----------
        mask : ``[H, W]`` boolean array in original-image pixels.
        rings : 0, 1 or 2 rings of 8-neighbour dilation on the token grid.
        view : restrict to one view (``None`` = all views with a grid).
        min_overlap : share of a token's box the mask must cover; 0 means any overlap.
        allow_empty : return no tokens, instead of raising ``EmptyMaskError``, when a
            (non-empty) mask covers no token, e.g. an object the centre crop cut
            away. An empty mask (no pixel set) is always an error.
        """
        mask = np.asarray(mask, dtype=bool)
        w, h = self.image_size
        if mask.shape != (h, w):
            raise ValueError(f"mask has shape {mask.shape}, but the image is {h}x{w} (HxW)")
        if rings < 0:
            raise ValueError("rings must be >= 0")
        if not mask.any():
            raise EmptyMaskError("the object mask is empty (no pixel set): it selects no image token")
        cover = self.mask_coverage(mask)
        hit = cover > min_overlap if min_overlap > 0 else cover > 0
        chosen = set()
        for v, (gr, gc) in enumerate(self.grids):
            if view is not None and v != view:
                continue
            idx = np.nonzero((self.views == v) & (self.cells[:, 0] >= 0))[0]
            grid = np.full((gr, gc), -1)
            grid[self.cells[idx, 0], self.cells[idx, 1]] = idx
            on = np.zeros((gr, gc), dtype=bool)
            on[self.cells[idx, 0], self.cells[idx, 1]] = hit[idx]
            for _ in range(rings):
                on = _dilate8(on)
            chosen.update(int(i) for i in grid[on] if i >= 0)
        if not chosen and not allow_empty:
            where = "any view" if view is None else f"view {view}"
            raise EmptyMaskError(f"the mask ({int(mask.sum())} pixels) covers no image token of "
                                 f"{where}" + (f" by more than {min_overlap:g}" if min_overlap > 0
                                              else " (it lies outside what the model sees)"))
        return np.array(sorted(chosen), dtype=np.int64)

    def mask_coverage(self, mask: np.ndarray) -> np.ndarray:
        """``[n_image]`` share of each token's box covered by ``mask`` (0 for empty boxes)."""
        integral = np.pad(np.asarray(mask, dtype=np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        out = np.zeros(len(self.boxes))
        for i in range(len(self.boxes)):
            r0, r1, c0, c1 = self._pixel_span(i)
            if c1 <= c0 or r1 <= r0:
                continue
            s = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
            out[i] = s / ((r1 - r0) * (c1 - c0))
        return out

    def to_grid(self, values, view: int = 0) -> np.ndarray:
        """Arrange per-token ``values [n_image]`` on a view's grid ``[rows, cols]`` (NaN holes)."""
        values = np.asarray(values, dtype=np.float64)
        gr, gc = self.grids[view]
        out = np.full((gr, gc), np.nan)
        idx = np.nonzero((self.views == view) & (self.cells[:, 0] >= 0))[0]
        out[self.cells[idx, 0], self.cells[idx, 1]] = values[idx]
        return out

    def to_pixels(self, values, view: int = 0) -> np.ndarray:
        """Paint per-token ``values`` onto the original image's pixels ``[H, W]`` (NaN uncovered)."""
        values = np.asarray(values, dtype=np.float64)
        w, h = self.image_size
        out = np.full((h, w), np.nan)
        for i in np.nonzero(self.views == view)[0]:
            if self.cells[i, 0] < 0:
                continue
            r0, r1, c0, c1 = self._pixel_span(i)
            out[r0:r1, c0:c1] = values[i]
        return out

    def _pixel_span(self, i: int) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) of the pixels whose centres lie in box ``i``, clipped.

        A box narrower than a pixel may hold no pixel centre (a small image
        enlarged to many tokens per pixel): it then gets the pixels it overlaps,
        so every token with a non-empty box touches at least one pixel.
        """
        w, h = self.image_size
        x0, y0, x1, y1 = self.boxes[i]
        c0, c1 = _centre_span(x0, x1, w)
        r0, r1 = _centre_span(y0, y1, h)
        return r0, r1, c0, c1


def _centre_span(a: float, b: float, n: int) -> tuple[int, int]:
    """Pixels ``[i0, i1)`` of ``0..n`` whose centres lie in ``[a, b)``; overlapped ones if none."""
    i0, i1 = (int(np.clip(np.ceil(v - 0.5), 0, n)) for v in (a, b))
    if i1 <= i0 and b > a:
        i0 = int(np.clip(np.floor(a), 0, n - 1))
        i1 = int(np.clip(np.ceil(b), i0 + 1, n))
    return i0, i1


def _dilate8(on: np.ndarray) -> np.ndarray:
    padded = np.pad(on, 1)
    out = np.zeros_like(on)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= padded[dy:dy + on.shape[0], dx:dx + on.shape[1]]
    return out


def grid_boxes(rows: int, cols: int, to_original) -> np.ndarray:
    """Boxes ``[rows*cols, 4]`` of a regular grid, mapped by ``to_original(u, v) -> (x, y)``.

    ``u, v`` are fractions (0-1) of the processed view's width and height.
    """
    out = np.zeros((rows * cols, 4))
    for r in range(rows):
        for c in range(cols):
            x0, y0 = to_original(c / cols, r / rows)
            x1, y1 = to_original((c + 1) / cols, (r + 1) / rows)
            out[r * cols + c] = (x0, y0, x1, y1)
    return out
