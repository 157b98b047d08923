"""Images in, RGB PIL images out: the one reader every model call and data set uses.

``to_rgb`` reads a PIL image, a path, bytes or an ``[H, W(, C)]`` array and
returns an RGB image; grayscale, palette, 16-bit and RGBA images are converted
with an ``ImageConversionWarning`` and a note. Anything it cannot read safely
(an undecodable file, NaN or infinite values, a picture over PIL's
decompression-bomb limit) is an ``ImageError`` naming the problem.
``vlmscope.ImageError`` and ``vlmscope.models.ImageError`` are this class.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np


class ImageError(ValueError):
    """An image could not be read or converted."""


class ImageConversionWarning(UserWarning):
    """An image was converted (e.g. grayscale or RGBA to RGB) before use."""


def to_rgb(image, notes: list[str] | None = None) -> "Image.Image":
    """Read ``image`` (PIL image, path, bytes, or ``[H, W(, C)]`` array) as RGB.

    Grayscale, palette, 16-bit and RGBA images are converted (RGBA is
    composited on white) with an ``ImageConversionWarning`` and a note.
    """
    from PIL import Image, UnidentifiedImageError

    notes = notes if notes is not None else []
    src = "image"
    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)
    if isinstance(image, (str, Path)):
        src = str(image)
        if not Path(image).exists():
            raise ImageError(f"no image file at {src}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(image) as im:
                    im.load()
                    image = im.copy()
        except bomb as e:
            raise ImageError(f"the image at {src} is too large to decode safely "
                             f"(a possible decompression bomb): {e}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"could not decode the image at {src}: {e}") from None
    elif isinstance(image, (bytes, bytearray)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(image))
                image.load()
        except bomb as e:
            raise ImageError(f"the image bytes are too large to decode safely "
                             f"(a possible decompression bomb): {e}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"could not decode the image bytes: {e}") from None
    elif isinstance(image, np.ndarray):
        arr = image
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
            raise ImageError(f"an image array must be [H, W] or [H, W, 1|3|4], not {arr.shape}")
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
            raise ImageError(f"an image array must hold numbers, not {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ImageError(f"the image array holds {bad} NaN or infinite values of {arr.size}")
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
                arr = arr * 255
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        image = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr)
    elif not isinstance(image, Image.Image):
        raise ImageError(f"expected a PIL image, a path, bytes or an array, not {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ImageError(f"{src} is empty ({image.width}x{image.height})")
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and image.width * image.height > limit:
        raise ImageError(f"{src} is too large ({image.width}x{image.height} = "
                         f"{image.width * image.height} pixels; PIL's decompression-bomb limit is "
                         f"{limit}); downscale it first")
    if image.mode != "RGB":
        mode = image.mode
        if mode in ("RGBA", "LA") or (mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(bg, rgba).convert("RGB")
            msg = f"{src}: {mode} image composited on white and converted to RGB"
        elif mode.startswith("I"):
            arr = np.asarray(image, dtype=np.float64)
            hi = 65535.0 if arr.max() > 255 else 255.0
            image = Image.fromarray((arr / hi * 255).clip(0, 255).astype(np.uint8)).convert("RGB")
            msg = f"{src}: {mode} image rescaled to 8 bits and converted to RGB"
        else:
            image = image.convert("RGB")
            msg = f"{src}: {mode} image converted to RGB"
        warnings.warn(msg, ImageConversionWarning, stacklevel=3)
        notes.append(msg)
    return image


__all__ = ["to_rgb", "ImageError", "ImageConversionWarning"]
