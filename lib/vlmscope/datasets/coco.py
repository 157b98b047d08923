"""A local COCO copy, filtered the way the object-ablation study chose images.

Neo et al. (ICLR 2025, REFERENCES.md section C1) ablate the visual tokens of a
single object: COCO images with at most 3 annotations that contain a
single-instance object (its category appears exactly once in the image) of
area between 1000 and 2000 px^2. ``load_coco`` reads your own copy (nothing is
downloaded) in the layout cocodataset.org ships::

    <root>/annotations/instances_val2017.json
    <root>/val2017/000000000139.jpg ...

and returns one ``CocoItem`` per qualifying image (the object to ablate, its
box, area and mask) in a ``CocoSelection``: a list that also carries the
filter counts (``.counts``, ``.summary()``), since every rate the project
reports needs its denominator.

>>> items = load_coco("data/coco", limit=100)          # doctest: +SKIP
>>> print(items.summary())                              # doctest: +SKIP
>>> item = items[0]; item.category, item.bbox           # doctest: +SKIP
('teddy bear', (412.3, 157.6, 465.1, 205.9))
>>> item.image().size, item.mask().shape, item.mask().sum()   # doctest: +SKIP
>>> object_words("teddy bear")                          # doctest: +SKIP
('teddy bear', 'teddy bears', 'teddy', 'teddies')

The filter, applied to each image in turn (an image is counted under the first
rule it fails; the keys of ``CocoSelection.counts``):

``no_annotations``
    the image has no annotation at all.
``too_many_annotations``
    more than ``max_annotations`` annotations (crowd annotations count, as in
    the reference code's ``getAnnIds(imgIds=...)``).
``no_single_instance``
    no category occurs exactly once. A crowd annotation (``iscrowd=1``, a
    region of many instances) makes its category not single-instance and is
    never chosen (the reference code could choose one; we do not).
``category_excluded``
    (only with ``categories=...``) no single-instance object is of a requested
    category.
``area_out_of_range``
    no remaining single-instance object has ``min_area < area < max_area``.
    Bounds are exclusive, as in the reference code (clemneo/llava-interp,
    ``area_threshold[0] < ann['area'] < area_threshold[1]``). ``area`` is the
    annotation's ``area`` field by default (COCO's polygon area, what the
    paper used); ``area="mask"`` uses the pixel count of the decoded mask
    instead (``CocoItem.mask_area()``; the two differ by the boundary pixels).
``missing_file``
    the image qualifies but its file is not on disk (skipped, not an error;
    the paths are in ``CocoSelection.missing``).

Of the qualifying annotations of an image the one with the smallest annotation
id is chosen (the reference code took the first in file order; in COCO's files
the two almost always agree, and the id does not depend on the file order).
Items come in image-id order, or with ``seed=`` in a seeded random order (a
fixed permutation: ``limit=100`` takes the first 100 of the order ``limit=200``
would, so samples of one seed are nested); ``limit`` then keeps the first
``limit`` (counted as ``over_limit``).

pycocotools is an optional dependency (``pip install vlmscope[coco]``); it
decodes the masks (polygons and RLE, compressed or not).

The words that name a category (``object_words``, re-exported here) are in
``coco_names.py``, the vocabulary the judges use too.
"""

from __future__ import annotations

import difflib
import json
import random
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..images import ImageError, to_rgb
from .coco_names import object_words

__all__ = ["CocoError", "CocoItem", "CocoSelection", "FILTER_RULES", "load_coco",
           "object_words"]

INSTALL_HINT = "pip install vlmscope[coco]"

# the funnel, in the order the rules are applied (keys of CocoSelection.counts)
FILTER_RULES = ("no_annotations", "too_many_annotations", "no_single_instance",
                "category_excluded", "area_out_of_range", "missing_file")

Box = tuple[float, float, float, float]


class CocoError(ValueError):
    """The annotation file is damaged or is not a COCO instances file."""


def _mask_utils():
    try:
        from pycocotools import mask as mask_utils
    except ImportError as e:
        raise ImportError(f"COCO masks need pycocotools, an optional dependency of vlmscope: "
                          f"{INSTALL_HINT} (or pip install pycocotools)") from e
    return mask_utils


# ------------------------------------------------------------------------ items
@dataclass(frozen=True)
class CocoItem:
    """One COCO image and the single-instance object chosen in it.

    Attributes
    ----------
    image_id, ann_id, category_id : COCO's ids.
    file : the image file (``<root>/<split>/<file_name>``).
    width, height : the image size the annotations give.
    category, supercategory : COCO's names ("teddy bear", "indoor").
    bbox : the object's box (x0, y0, x1, y1) in pixels, converted from COCO's
        (x, y, width, height).
    area : the annotation's ``area`` field (px^2; COCO's polygon area). The
        decoded mask's pixel count is ``mask_area()``.
    n_annotations : how many annotations the image has (crowd included).
    segmentation : the annotation's segmentation as stored (polygons or RLE).
    """

    image_id: int
    file: Path
    width: int
    height: int
    category: str
    supercategory: str
    ann_id: int
    bbox: Box
    area: float
    category_id: int = -1
    n_annotations: int = 1
    segmentation: object = field(default=None, compare=False, repr=False)

    def image(self):
        """The image as a PIL RGB image (grayscale files are converted with a warning)."""
        try:
            im = to_rgb(self.file)
        except ImageError as e:
            raise ImageError(f"COCO image {self.image_id}: {e}") from None
        if im.size != (self.width, self.height):
            raise ImageError(f"COCO image {self.image_id}: {self.file} is {im.width}x{im.height} "
                             f"but the annotations say {self.width}x{self.height}, so the mask "
                             f"and box would not line up (images from another split or resized?)")
        return im

    def mask(self) -> np.ndarray:
        """The object's mask: boolean ``[height, width]``, decoded with pycocotools."""
        return _decode(self.segmentation, self.height, self.width, self.ann_id)

    def mask_area(self) -> int:
        """The mask's pixel count (``area`` is the annotation's polygon area)."""
        return int(self.mask().sum())

    def words(self) -> tuple[str, ...]:
        """``object_words(self.category)``."""
        return object_words(self.category)


def _rle(segmentation, height: int, width: int, ann_id):
    """pycocotools RLE of a segmentation (polygons, uncompressed or compressed RLE)."""
    mu = _mask_utils()
    if isinstance(segmentation, list):
        # pycocotools reads a 4-number "polygon" as a box: drop degenerate polygons
        polys = [list(map(float, p)) for p in segmentation
                 if isinstance(p, (list, tuple)) and len(p) >= 6]
        if not polys:
            return mu.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mu.merge(mu.frPyObjects(polys, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        size = list(segmentation["size"])
        if size != [height, width]:
            raise CocoError(f"annotation {ann_id}: its RLE is {size[0]}x{size[1]} (height x "
                            f"width) but its image is {height}x{width}")
        if isinstance(segmentation["counts"], list):  # uncompressed RLE (crowd regions)
            return mu.frPyObjects(segmentation, height, width)
        counts = segmentation["counts"]
        return {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
    raise CocoError(f"annotation {ann_id} has no usable segmentation (polygons or RLE), "
                    f"got {type(segmentation).__name__}")


def _decode(segmentation, height: int, width: int, ann_id) -> np.ndarray:
    rle = _rle(segmentation, height, width, ann_id)
    with warnings.catch_warnings():  # pycocotools' numpy-2 copy= DeprecationWarning
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="pycocotools")
        m = _mask_utils().decode(rle)
    if m.ndim == 3:
        m = m.any(axis=2)
    return np.ascontiguousarray(m.astype(bool))


# -------------------------------------------------------------------- selection
class CocoSelection(list):
    """The ``CocoItem`` list ``load_coco`` returns, with how it was chosen.

    Attributes
    ----------
    counts : ``{"images": n, <rule>: dropped, ..., "qualifying": n,
        "over_limit": n, "returned": n}``, the rules in ``FILTER_RULES`` order;
        ``images = sum(rules) + qualifying`` and
        ``qualifying = over_limit + returned``.
    missing : image files the annotations list that are not on disk (among
        images that passed the other rules).
    annotation_file, image_dir : what was read.
    params : the filter's parameters.
    """

    def __init__(self, items=(), *, counts=None, missing=(), annotation_file=None,
                 image_dir=None, params=None):
        super().__init__(items)
        self.counts: dict[str, int] = dict(counts or {})
        self.missing: list[Path] = list(missing)
        self.annotation_file = annotation_file
        self.image_dir = image_dir
        self.params: dict = dict(params or {})

    def summary(self) -> str:
        """The filter funnel as text, one line per rule."""
        c, p = self.counts, self.params
        name = Path(self.annotation_file).name if self.annotation_file else "annotations"
        cats = f" of {', '.join(p['categories'])}" if p.get("categories") else ""
        labels = {
            "no_annotations": "no annotations",
            "too_many_annotations": f"more than {p.get('max_annotations')} annotations",
            "no_single_instance": "no single-instance (non-crowd) object",
            "category_excluded": f"no single-instance object{cats}",
            "area_out_of_range": (f"no such object with {p.get('min_area')} < area < "
                                  f"{p.get('max_area')} ({p.get('area')} area)"),
            "missing_file": f"image file missing in {self.image_dir}",
        }
        lines = [f"{c.get('images', 0)} images in {name}"]
        lines += [f"  - {c.get(k, 0):>6}  {labels[k]}" for k in FILTER_RULES]
        lines.append(f"  = {c.get('qualifying', 0):>6}  qualifying")
        if c.get("over_limit"):
            lines.append(f"  - {c['over_limit']:>6}  over limit={p.get('limit')}")
        lines.append(f"  = {c.get('returned', len(self)):>6}  returned")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"CocoSelection({len(self)} items of {self.counts.get('images', '?')} images; "
                f"counts={self.counts})")


def _read_annotations(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise CocoError(f"{path} is damaged: not valid JSON ({e.msg} at line {e.lineno}, "
                        f"column {e.colno}); download or unzip it again") from None
    except UnicodeDecodeError as e:
        raise CocoError(f"{path} is damaged: not UTF-8 text ({e.reason} at byte {e.start}); "
                        f"download or unzip it again") from None
    if not isinstance(data, dict) or not all(
            isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise CocoError(f"{path} is not a COCO instances file: it needs lists 'images', "
                        f"'annotations' and 'categories' (found {keys}); captions and "
                        f"keypoints files do not have the object annotations")
    return data


def _check_root(root: Path, split: str, ann_file: Path, explicit: bool) -> None:
    if ann_file.is_file():
        return
    expected = f"{ann_file}" if explicit else (
        f"{ann_file} (the layout is <root>/annotations/instances_{split}.json next to "
        f"<root>/{split}/*.jpg, as in annotations_trainval2017.zip from cocodataset.org)")
    where = ""
    if not root.is_dir():
        where = f"; {root} does not exist"
    elif ann_file.parent.is_dir():
        found = sorted(p.name for p in ann_file.parent.glob("*.json"))
        where = f"; {ann_file.parent} has {', '.join(found) if found else 'no .json files'}"
    raise FileNotFoundError(f"no COCO annotation file: expected {expected}{where}")


def load_coco(root, split: str = "val2017", limit: int | None = None, min_area: float = 1000,
              max_area: float = 2000, max_annotations: int = 3, categories=None,
              seed: int | None = None, *, area: str = "annotation",
              annotation_file=None) -> CocoSelection:
    """COCO images with one single-instance object each, filtered as in Neo et al.

    Parameters
    ----------
    root : the COCO folder (``annotations/`` and ``<split>/`` inside).
    split : "val2017", "train2017", ...: names ``annotations/instances_<split>.json``
        and the image folder ``<root>/<split>``.
    limit : keep at most this many items (after ordering; None: all).
    min_area, max_area : exclusive bounds on the object's area (px^2).
    max_annotations : images with more annotations are dropped.
    categories : COCO category names to keep (e.g. ``["dog", "teddy bear"]``);
        None: all. Unknown names raise ``ValueError``.
    seed : None: image-id order; an int: a seeded random order.
    area : "annotation" (the annotation's ``area`` field, as the paper) or
        "mask" (the decoded mask's pixel count).
    annotation_file : a different instances JSON (default as above).

    Returns a ``CocoSelection`` (a list of ``CocoItem``) whose ``counts`` and
    ``summary()`` give the filter funnel; see the module docstring for the
    rules. Raises ``ImportError`` without pycocotools, ``FileNotFoundError``
    for a missing annotation file or image folder, ``CocoError`` for a damaged
    or non-instances annotation file.
    """
    _mask_utils()
    if area not in ("annotation", "mask"):
        raise ValueError(f"area must be 'annotation' (the annotation's area field) or 'mask' "
                         f"(the decoded mask's pixel count), not {area!r}")
    if not min_area < max_area:
        raise ValueError(f"min_area ({min_area}) must be below max_area ({max_area})")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
    if isinstance(max_annotations, bool) or not isinstance(max_annotations, int) \
            or max_annotations < 1:
        raise ValueError(f"max_annotations must be a positive int, not {max_annotations!r}")

    root = Path(root).expanduser()
    ann_file = Path(annotation_file).expanduser() if annotation_file else \
        root / "annotations" / f"instances_{split}.json"
    _check_root(root, split, ann_file, explicit=annotation_file is not None)
    image_dir = root / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"no COCO image folder at {image_dir} (expected "
                                f"<root>/{split}/*.jpg next to {ann_file})")
    data = _read_annotations(ann_file)

    try:
        cats = {c["id"]: (str(c["name"]), str(c.get("supercategory", "")))
                for c in data["categories"]}
    except (KeyError, TypeError):
        raise CocoError(f"{ann_file}: a category lacks 'id' or 'name'") from None
    wanted = None
    if categories is not None:
        names = [categories] if isinstance(categories, str) else list(categories)
        known = {n for n, _ in cats.values()}
        unknown = [n for n in names if n not in known]
        if unknown:
            hints = [f"{n!r} (did you mean {', '.join(map(repr, m))}?)" if
                     (m := difflib.get_close_matches(n, sorted(known), n=3)) else repr(n)
                     for n in unknown]
            raise ValueError(f"unknown COCO categories: {', '.join(hints)}; the categories in "
                             f"{ann_file.name} are {', '.join(sorted(known))}")
        wanted = {cid for cid, (n, _) in cats.items() if n in names}

    by_image: dict = {}
    for i, a in enumerate(data["annotations"]):
        try:
            by_image.setdefault(a["image_id"], []).append(a)
        except (KeyError, TypeError):
            raise CocoError(f"{ann_file}: annotation #{i} has no 'image_id'") from None

    def _area(a, h: int, w: int) -> float:
        if area == "mask":
            return float(_mask_utils().area(_rle(a.get("segmentation"), h, w, a.get("id"))))
        return float(a["area"])

    counts = {"images": 0, **{k: 0 for k in FILTER_RULES}}
    chosen: list[CocoItem] = []
    missing: list[Path] = []
    try:
        images = sorted(data["images"], key=lambda im: im["id"])
    except (KeyError, TypeError):
        raise CocoError(f"{ann_file}: an image record has no 'id'") from None
    for im in images:
        counts["images"] += 1
        anns = by_image.get(im["id"], [])
        if not anns:
            counts["no_annotations"] += 1
            continue
        if len(anns) > max_annotations:
            counts["too_many_annotations"] += 1
            continue
        try:
            per_cat = Counter(a["category_id"] for a in anns)
            singles = [a for a in anns if per_cat[a["category_id"]] == 1 and not a.get("iscrowd")]
            if not singles:
                counts["no_single_instance"] += 1
                continue
            if wanted is not None:
                singles = [a for a in singles if a["category_id"] in wanted]
                if not singles:
                    counts["category_excluded"] += 1
                    continue
            h, w = int(im["height"]), int(im["width"])
            ok = [a for a in singles if min_area < _area(a, h, w) < max_area]
            if not ok:
                counts["area_out_of_range"] += 1
                continue
            a = min(ok, key=lambda a: a["id"])
            x, y, bw, bh = (float(v) for v in a["bbox"])
            name, supercat = cats[a["category_id"]]
            item = CocoItem(image_id=im["id"], file=image_dir / im["file_name"], width=w,
                            height=h, category=name, supercategory=supercat, ann_id=a["id"],
                            bbox=(x, y, x + bw, y + bh), area=float(a["area"]),
                            category_id=a["category_id"], n_annotations=len(anns),
                            segmentation=a.get("segmentation"))
        except KeyError as e:
            raise CocoError(f"{ann_file}: image {im.get('id')} or one of its annotations lacks "
                            f"the field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, CocoError):
                raise
            raise CocoError(f"{ann_file}: image {im.get('id')} has a malformed record: "
                            f"{e}") from None
        if not item.file.is_file():
            counts["missing_file"] += 1
            missing.append(item.file)
            continue
        chosen.append(item)

    counts["qualifying"] = len(chosen)
    if seed is not None:
        random.Random(seed).shuffle(chosen)
    kept = chosen if limit is None else chosen[:limit]
    counts["over_limit"] = len(chosen) - len(kept)
    counts["returned"] = len(kept)
    params = {"split": split, "limit": limit, "min_area": min_area, "max_area": max_area,
              "max_annotations": max_annotations,
              "categories": None if wanted is None else sorted(cats[c][0] for c in wanted),
              "seed": seed, "area": area}
    return CocoSelection(kept, counts=counts, missing=missing, annotation_file=ann_file,
                         image_dir=image_dir, params=params)
