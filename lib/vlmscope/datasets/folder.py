"""Your own images: a folder of pictures with the objects in them outlined.

The notebooks run on the synthetic world by default. Point them at a folder
(``images=...``, or ``python -m vlmscope notebooks run --images DIR``) and the
analyses that need an image and an object's pixels take them from here
instead. The layout::

    <folder>/annotations.json
    <folder>/kitchen.jpg
    <folder>/masks/kitchen_cup.png        (optional: a mask instead of a box)

``annotations.json`` lists the images in order, each with its objects; an
object has a ``name`` (the words a model should use for it, e.g. "cup" or
"red circle") and either a ``box`` ``[x0, y0, x1, y1]`` in the image's own
pixels (x1, y1 exclusive) or a ``mask``: a PNG of the image's size, relative
to the folder, whose non-zero pixels are the object::

    {"images": [
      {"file": "kitchen.jpg",
       "objects": [{"name": "cup", "box": [412, 157, 466, 206]},
                   {"name": "plate", "mask": "masks/kitchen_plate.png"}]}
    ]}

An image may also carry a ``question`` and its ``answer`` (both optional);
without them the notebooks ask for a description. ``load_folder`` returns
``ImageRecord`` objects: ``.image`` (RGB PIL), ``.objects`` (``LabelledObject``:
``.name``, ``.mask`` bool ``[H, W]``, ``.bbox``, ``.words``) and
``.description()``, the same attributes the notebooks read from a synthetic
scene. ``data/images`` holds a three-image sample in this layout.

>>> records = load_folder("data/images")     # doctest: +SKIP
>>> records[0].objects[0].name, records[0].image.size   # doctest: +SKIP
('red circle', (640, 480))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["ANNOTATIONS", "FolderError", "ImageRecord", "LabelledObject", "item_questions",
           "load_folder", "load_images"]

ANNOTATIONS = "annotations.json"


class FolderError(ValueError):
    """The image folder or its annotations.json do not follow the documented layout."""


@dataclass(frozen=True)
class LabelledObject:
    """One annotated object: its name and its pixels in the image's own coordinates."""

    name: str
    mask: np.ndarray = field(repr=False, compare=False)
    aliases: tuple[str, ...] = ()  # more words that name it (e.g. COCO's plurals)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), exclusive upper bounds, in image pixels."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

    @property
    def words(self) -> tuple[str, ...]:
        """The words that name it in an answer: the name and, for a multi-word name, each word."""
        parts = self.name.lower().split()
        return tuple(dict.fromkeys([self.name.lower()] + parts + [a.lower() for a in self.aliases]))

    @property
    def where(self) -> str:
        """Row and column words of the box centre on a 3x3 grid ("top left" ... "bottom right")."""
        h, w = self.mask.shape
        x0, y0, x1, y1 = self.bbox
        row = ("top", "middle", "bottom")[min(2, int(3 * (y0 + y1) / 2 / h))]
        col = ("left", "center", "right")[min(2, int(3 * (x0 + x1) / 2 / w))]
        return f"{row} {col}"


@dataclass(frozen=True)
class ImageRecord:
    """An image of the folder and its annotated objects (in the file's order)."""

    image: Image.Image = field(repr=False)
    objects: tuple[LabelledObject, ...]
    file: str
    question: str | None = None
    answer: str | None = None

    def description(self) -> str:
        """The reference the notebooks print beside a model's description: the object names."""
        return " , ".join(f"a {o.name}" for o in self.objects) + " ."


def _box_mask(box, size, where: str) -> np.ndarray:
    w, h = size
    if not (isinstance(box, (list, tuple)) and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)):
        raise FolderError(f"{where}: 'box' must be [x0, y0, x1, y1], got {box!r}")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        raise FolderError(f"{where}: box {list(box)} covers no pixel of the {w}x{h} image "
                          "(x1, y1 are exclusive and must exceed x0, y0)")
    mask = np.zeros((h, w), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _file_mask(root: Path, name, size, where: str) -> np.ndarray:
    path = root / str(name)
    if not path.is_file():
        raise FolderError(f"{where}: mask file {path} does not exist")
    with Image.open(path) as m:
        if m.size != size:
            raise FolderError(f"{where}: mask {path.name} is {m.size[0]}x{m.size[1]}, "
                              f"the image is {size[0]}x{size[1]}")
        mask = np.asarray(m.convert("L")) > 0
    if not mask.any():
        raise FolderError(f"{where}: mask {path.name} is empty (no non-zero pixel)")
    return mask


def load_folder(path, limit: int | None = None) -> list[ImageRecord]:
    """The images and objects of a folder in the layout above (see the module docstring).

    Raises ``FileNotFoundError`` when the folder or an image is missing and
    ``FolderError`` naming the image and object when an annotation is malformed.
    """
    from ..images import to_rgb

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    ann = root / ANNOTATIONS
    if not ann.is_file():
        raise FileNotFoundError(f"{root} has no {ANNOTATIONS}: an image folder lists its images "
                                "and their objects there (see vlmscope.datasets.folder)")
    try:
        data = json.loads(ann.read_text())
    except json.JSONDecodeError as e:
        raise FolderError(f"{ann} is not valid JSON: {e}") from e
    entries = data.get("images") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise FolderError(f"{ann} must hold {{\"images\": [...]}} with at least one image")
    records = []
    for i, entry in enumerate(entries[:limit] if limit else entries):
        if not isinstance(entry, dict) or "file" not in entry:
            raise FolderError(f"{ann}: image {i} has no 'file'")
        file = root / entry["file"]
        if not file.is_file():
            raise FileNotFoundError(f"{ann}: image {i} names {file}, which does not exist")
        image = to_rgb(file)
        objs = entry.get("objects") or []
        if not isinstance(objs, list) or not objs:
            raise FolderError(f"{ann}: {entry['file']} lists no objects (each image needs at "
                              "least one object with a name and a box or mask)")
        objects = []
        for j, o in enumerate(objs):
            where = f"{ann.name}: {entry['file']}, object {j}"
            if not isinstance(o, dict) or not str(o.get("name", "")).strip():
                raise FolderError(f"{where} has no 'name'")
            if ("box" in o) == ("mask" in o):
                raise FolderError(f"{where} ({o['name']!r}) needs exactly one of 'box' or 'mask'")
            mask = (_box_mask(o["box"], image.size, where) if "box" in o
                    else _file_mask(root, o["mask"], image.size, where))
            objects.append(LabelledObject(str(o["name"]).strip(), mask))
        records.append(ImageRecord(image, tuple(objects), str(entry["file"]),
                                   entry.get("question"), entry.get("answer")))
    return records


def load_images(source=None, n: int = 8, seed: int = 0) -> list:
    """The ``n`` images a notebook analyses, from ``source``.

    ``source`` empty or None: the synthetic world's scenes (``World().scene(_mix(seed, i))``,
    what the notebooks have always used). A folder with ``annotations.json``:
    its first ``n`` images (``load_folder``). A local COCO copy (a folder with
    ``annotations/instances_<split>.json``): ``n`` images of ``load_coco``'s
    single-object selection in its seeded order, each with its chosen object.
    Fewer than ``n`` available gives what there is.
    """
    if not source:
        from .synthetic import World, _mix

        world = World()
        return [world.scene(_mix(seed, i)) for i in range(n)]
    root = Path(source)
    if not root.is_dir():
        raise FileNotFoundError(f"image source {root} is not a folder (expected a folder with "
                                f"{ANNOTATIONS}, or a local COCO copy)")
    if (root / ANNOTATIONS).is_file():
        return load_folder(root, limit=n)
    if sorted((root / "annotations").glob("instances_*.json")):
        from .coco import load_coco

        split = sorted((root / "annotations").glob("instances_*.json"))[0].stem[len("instances_"):]
        items = load_coco(root, split=split, limit=n, seed=seed)
        return [ImageRecord(it.image(), (LabelledObject(it.category, it.mask(),
                                                        tuple(it.words())),), str(it.file))
                for it in items]
    raise FileNotFoundError(f"{root} has neither {ANNOTATIONS} (an image folder) nor "
                            "annotations/instances_*.json (a COCO copy)")


def item_questions(item, seed: int = 0) -> list[tuple[str, str, str]]:
    """(kind, question, answer) to ask of one item of ``load_images``.

    A synthetic scene: one question of every kind (``World.questions`` with
    ``seed``). An annotated image: a description (its reference is
    ``description()``), and its own question when the folder gives one.
    """
    if hasattr(item, "object_by"):
        from .synthetic import World

        return [(q.kind, q.text, q.answer) for q in World().questions(item, seed=seed)]
    own = [("annotated", item.question, item.answer or "")] if item.question else []
    return [("describe", "describe the image .", item.description())] + own


def write_sample_folder(out, n: int = 3, size: tuple[int, int] = (640, 480), seed: int = 7) -> Path:
    """Write ``n`` synthetic scenes as an image folder of ``size`` (W, H) in the layout above.

    Each scene is rendered square at the height and centred on a canvas of the
    width filled with its background colour, so the images are non-square.
    Objects get boxes, except the first object of the second image, which gets
    a mask PNG (both kinds of annotation in one sample). ``data/images`` is
    ``write_sample_folder("data/images")``.
    """
    from .synthetic import World

    out = Path(out)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    if w < h:
        raise ValueError(f"size {size}: the sample is landscape (width >= height)")
    world = World(size=h)
    left = (w - h) // 2
    entries = []
    for i in range(n):
        scene = world.scene(seed=seed + i)
        pixels = np.asarray(scene.image)
        canvas = np.empty((h, w, 3), dtype=np.uint8)
        canvas[:] = np.median(pixels.reshape(-1, 3), axis=0).astype(np.uint8)
        canvas[:, left:left + h] = pixels
        file = f"scene{i}.jpg"
        Image.fromarray(canvas).save(out / file, quality=92)
        objects = []
        for j, o in enumerate(scene.objects):
            mask = np.zeros((h, w), dtype=bool)
            mask[:, left:left + h] = o.mask
            if i == 1 and j == 0:
                name = f"masks/scene{i}_{o.color}_{o.shape}.png"
                Image.fromarray(mask.astype(np.uint8) * 255).convert("1").save(out / name)
                objects.append({"name": o.name, "mask": name})
            else:
                ys, xs = np.nonzero(mask)
                objects.append({"name": o.name, "box": [int(xs.min()), int(ys.min()),
                                                        int(xs.max()) + 1, int(ys.max()) + 1]})
        entries.append({"file": file, "objects": objects})
    lines = ",\n".join(f'  {{"file": {json.dumps(e["file"])}, "objects": [\n    '
                        + ",\n    ".join(json.dumps(o) for o in e["objects"]) + "]}"
                        for e in entries)
    (out / ANNOTATIONS).write_text('{"images": [\n' + lines + "\n]}\n")
    return out
