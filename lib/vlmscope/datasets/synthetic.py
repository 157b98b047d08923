"""The synthetic world: scenes of coloured shapes with exact masks and answers, and its grammar.

Every scene is drawn on a light, slightly noisy background and holds 1-4
objects. Within a scene all shapes are distinct and all colours are distinct,
so "what colour is the circle?" and "what shape is the red object?" always
have one answer. Objects sit in distinct cells of a 3x3 layout, so "where is
the red circle?" has exact row and column words, and objects never overlap.

The world's grammar lives here and only here: ``QUESTIONS`` (a template per
question kind, ``question(kind, obj)``), ``DESCRIBE``, and the description
grammar (``OBJECT_PHRASE``, ``describe``, ``parse_description``).

>>> world = World()
>>> scene = world.scene(seed=0)
>>> scene.image.size
(64, 64)
>>> [q.kind for q in world.questions(scene, seed=0)][:3]
['color', 'shape', 'where']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 50, 180),
}
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
NUMBERS = ("zero", "one", "two", "three", "four")
QUESTION_KINDS = ("color", "shape", "where", "exists", "count", "describe")

# ---------------------------------------------------------------- the grammar
# The world's language, written once: every question the library asks about a scene and the
# phrase a description lists its objects with. Tokenizers trained on the world and the
# organism's training data use these; changing one changes what the organism was trained on.
DESCRIBE = "describe the image ."
QUESTIONS = {
    "color": "what color is the {shape} ?",
    "shape": "what shape is the {color} object ?",
    "where": "where is the {color} {shape} ?",
    "exists": "is there a {color} {shape} ?",
    "count": "how many objects are there ?",
    "describe": DESCRIBE,
}
OBJECT_PHRASE = "a {color} {shape} at {row} {col}"  # one object of a description
DESCRIPTION_SEPARATOR, DESCRIPTION_END = " , ", " ."
_OBJECT_RE = re.compile(rf"\b({'|'.join(COLORS)})\s+({'|'.join(SHAPES)})\s+at\s+({'|'.join(ROWS)})"
                        rf"\s+({'|'.join(COLS)})\b")


def question(kind: str, obj=None, *, color: str | None = None, shape: str | None = None) -> str:
    """The text of a ``kind`` question (one of ``QUESTION_KINDS``) about ``obj`` (anything with
    ``color`` and ``shape``, e.g. a ``SceneObject``) or about the ``color`` / ``shape`` given.

    >>> question("color", shape="circle")
    'what color is the circle ?'
    >>> question("exists", color="red", shape="cross")
    'is there a red cross ?'
    """
    if kind not in QUESTIONS:
        raise ValueError(f"unknown question kind {kind!r}; known: {', '.join(QUESTION_KINDS)}")
    color = color if color is not None else getattr(obj, "color", None)
    shape = shape if shape is not None else getattr(obj, "shape", None)
    template = QUESTIONS[kind]
    missing = [n for n, v in (("color", color), ("shape", shape)) if "{" + n + "}" in template and v is None]
    if missing:
        raise ValueError(f"a {kind!r} question needs an object's {' and '.join(missing)}")
    return template.format(color=color, shape=shape)


def describe(objects) -> str:
    """A description in the world's grammar: ``"a red circle at top left , ... ."``."""
    parts = [OBJECT_PHRASE.format(color=o.color, shape=o.shape, row=ROWS[o.row], col=COLS[o.col])
             for o in objects]
    return DESCRIPTION_SEPARATOR.join(parts) + DESCRIPTION_END


def parse_description(text: str) -> set[tuple[str, str, str, str]]:
    """Objects named in a description in the world's grammar: {(colour, shape, row, col)}."""
    return set(_OBJECT_RE.findall(text.lower()))


SOURCE_KEY = "vlmscope.source"  # in a rendered scene's PIL ``info``: "synthetic"


def is_synthetic(data) -> bool:
    """Whether ``data`` (a ``Scene`` or an image) comes from the synthetic world."""
    if isinstance(data, Scene):
        return True
    return getattr(data, "info", {}).get(SOURCE_KEY) == "synthetic"


@dataclass(frozen=True)
class SceneObject:
    """One object: what it is, where it is, and its exact pixel mask.

    ``mask`` is a boolean array ``[H, W]`` in the scene's own pixel space.
    """

    shape: str
    color: str
    row: int
    col: int
    mask: np.ndarray = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def where(self) -> str:
        return f"{ROWS[self.row]} {COLS[self.col]}"

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1), exclusive upper bounds, in scene pixels."""
        ys, xs = np.nonzero(self.mask)
        return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@dataclass(frozen=True)
class Scene:
    """An image and its objects, in reading order (row-major by cell)."""

    image: Image.Image = field(repr=False)
    objects: tuple[SceneObject, ...]
    seed: int

    def description(self) -> str:
        """The reference answer to "describe the image" (``describe``)."""
        return describe(self.objects)

    def object_by(self, shape: str | None = None, color: str | None = None):
        for o in self.objects:
            if (shape is None or o.shape == shape) and (color is None or o.color == color):
                return o
        return None


@dataclass(frozen=True)
class Question:
    """A question about a scene, its exact answer, and the object it concerns."""

    kind: str
    text: str
    answer: str
    target: SceneObject | None = None


@dataclass(frozen=True)
class World:
    """A seeded generator of scenes and questions.

    Parameters
    ----------
    size : image side in pixels.
    min_objects, max_objects : how many objects a scene holds.
    object_frac : (low, high) object size as a fraction of a layout cell.
    noise : std of the background's pixel noise (0-255 scale).
    """

    size: int = 64
    min_objects: int = 1
    max_objects: int = 4
    object_frac: tuple[float, float] = (0.6, 0.85)
    noise: float = 6.0

    def scene(self, seed: int, n_objects: int | None = None) -> Scene:
        rng = np.random.default_rng(seed)
        n = n_objects or int(rng.integers(self.min_objects, self.max_objects + 1))
        if not 1 <= n <= min(len(SHAPES), len(COLORS), 9):
            raise ValueError(f"a scene holds 1-{min(len(SHAPES), len(COLORS))} objects, not {n}")
        shapes = rng.choice(len(SHAPES), n, replace=False)
        colors = rng.choice(len(COLORS), n, replace=False)
        cells = sorted(rng.choice(9, n, replace=False))  # row-major reading order
        bg = np.array([238, 236, 230]) + rng.integers(-8, 9, size=3)
        pixels = bg[None, None, :] + rng.normal(0, self.noise, (self.size, self.size, 3))
        canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        objects = []
        cell = self.size / 3
        for s, c, k in zip(shapes, colors, cells):
            row, col = divmod(int(k), 3)
            side = cell * rng.uniform(*self.object_frac)
            slack = cell - side
            x0 = col * cell + rng.uniform(0, slack)
            y0 = row * cell + rng.uniform(0, slack)
            mask = _shape_mask(SHAPES[s], self.size, x0, y0, side)
            colour = np.array(COLORS[list(COLORS)[c]]) + rng.integers(-15, 16, size=3)
            arr = np.asarray(canvas).copy()
            arr[mask] = np.clip(colour, 0, 255)
            canvas = Image.fromarray(arr)
            objects.append(SceneObject(SHAPES[s], list(COLORS)[c], row, col, mask))
        canvas.info[SOURCE_KEY] = "synthetic"
        return Scene(canvas, tuple(objects), seed)

    def questions(self, scene: Scene, seed: int, kinds=QUESTION_KINDS) -> list[Question]:
        """One question of each kind in ``kinds`` about ``scene``."""
        rng = np.random.default_rng([seed, 7])
        return [self.question(scene, kind, rng) for kind in kinds]

    def question(self, scene: Scene, kind: str, rng: np.random.Generator) -> Question:
        objs = scene.objects
        o = objs[int(rng.integers(len(objs)))]
        if kind == "color":
            return Question(kind, question(kind, o), o.color, o)
        if kind == "shape":
            return Question(kind, question(kind, o), o.shape, o)
        if kind == "where":
            return Question(kind, question(kind, o), o.where, o)
        if kind == "count":
            return Question(kind, question(kind), NUMBERS[len(objs)])
        if kind == "describe":
            return Question(kind, question(kind), scene.description())
        if kind == "exists":
            if rng.random() < 0.5:
                return Question(kind, question(kind, o), "yes", o)
            shape, color = _hard_negative(scene, rng)
            return Question(kind, question(kind, color=color, shape=shape), "no")
        raise ValueError(f"unknown question kind {kind!r}; known: {', '.join(QUESTION_KINDS)}")

    def samples(self, n: int, seed: int, kinds=QUESTION_KINDS):
        """``n`` fresh scenes from ``seed``, each with one question of every kind."""
        for i in range(n):
            scene = self.scene(seed=_mix(seed, i))
            yield scene, self.questions(scene, seed=_mix(seed, i), kinds=kinds)


def move_object(scene: Scene, index: int, dx: int, dy: int) -> Scene:
    """The scene with object ``index`` shifted by ``(dx, dy)`` pixels (a sanity check's input).

    The object's pixels are copied to the new place; where it was, the
    background (the median colour of the pixels no object covers) fills in.
    Its row and column words follow its new centre. The shifted object must
    stay inside the image and must not overlap another object.
    """
    arr = np.asarray(scene.image).copy()
    obj = scene.objects[index]
    h, w = obj.mask.shape
    ys, xs = np.nonzero(obj.mask)
    if ys.min() + dy < 0 or xs.min() + dx < 0 or ys.max() + dy >= h or xs.max() + dx >= w:
        raise ValueError(f"moving the {obj.name} by ({dx}, {dy}) takes it out of the image")
    new = np.zeros_like(obj.mask)
    new[ys + dy, xs + dx] = True
    others = [o for i, o in enumerate(scene.objects) if i != index]
    if any((o.mask & new).any() for o in others):
        raise ValueError(f"moving the {obj.name} by ({dx}, {dy}) overlaps another object")
    free = ~np.logical_or.reduce([o.mask for o in scene.objects])
    background = np.median(arr[free], axis=0).astype(np.uint8)
    pixels = arr[ys, xs].copy()
    arr[obj.mask] = background
    arr[ys + dy, xs + dx] = pixels
    cell = w / 3
    row = min(int((ys.mean() + dy) // cell), 2)
    col = min(int((xs.mean() + dx) // cell), 2)
    moved = SceneObject(obj.shape, obj.color, row, col, new)
    objects = tuple(moved if i == index else o for i, o in enumerate(scene.objects))
    moved = Image.fromarray(arr)
    moved.info[SOURCE_KEY] = "synthetic"
    return Scene(moved, objects, scene.seed)


def _mix(seed: int, i: int) -> int:
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])


def _hard_negative(scene: Scene, rng: np.random.Generator) -> tuple[str, str]:
    """An absent (shape, colour) pair, preferring a present shape with a present colour."""
    present = {(o.shape, o.color) for o in scene.objects}
    shapes = [o.shape for o in scene.objects]
    colors = [o.color for o in scene.objects]
    hard = [(s, c) for s in shapes for c in colors if (s, c) not in present]
    if hard and rng.random() < 0.8:
        return hard[int(rng.integers(len(hard)))]
    pool = [(s, c) for s in SHAPES for c in COLORS if (s, c) not in present]
    return pool[int(rng.integers(len(pool)))]


def _shape_mask(shape: str, size: int, x0: float, y0: float, side: float) -> np.ndarray:
    """Boolean mask ``[size, size]`` of a shape in the square (x0, y0, side)."""
    img = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(img)
    x1, y1 = x0 + side, y0 + side
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if shape == "circle":
        d.ellipse([x0, y0, x1, y1], fill=255)
    elif shape == "square":
        inset = side * 0.08
        d.rectangle([x0 + inset, y0 + inset, x1 - inset, y1 - inset], fill=255)
    elif shape == "triangle":
        d.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=255)
    elif shape == "diamond":
        d.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=255)
    elif shape == "cross":
        t = side / 6
        d.rectangle([cx - t, y0, cx + t, y1], fill=255)
        d.rectangle([x0, cy - t, x1, cy + t], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(img) > 127
