import numpy as np
import pytest

from vlmscope.datasets.synthetic import COLORS, QUESTION_KINDS, SHAPES, World
from vlmscope.organism.evaluate import object_f1, parse_description


def test_scene_is_deterministic_and_objects_are_distinct():
    w = World()
    a, b = w.scene(seed=5), w.scene(seed=5)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    for seed in range(40):
        sc = w.scene(seed=seed)
        assert 1 <= len(sc.objects) <= 4
        assert len({o.shape for o in sc.objects}) == len(sc.objects)
        assert len({o.color for o in sc.objects}) == len(sc.objects)
        cells = [(o.row, o.col) for o in sc.objects]
        assert cells == sorted(cells) and len(set(cells)) == len(cells)
        total = sum(o.mask.astype(int) for o in sc.objects)
        assert total.max() == 1, "masks overlap"
        for o in sc.objects:
            assert o.mask.sum() > 30
            # the mask's pixels carry the object's colour, not the background's
            px = np.asarray(sc.image)[o.mask].mean(0)
            assert np.abs(px - np.array(COLORS[o.color])).max() < 30


def test_mask_lies_in_its_layout_cell():
    w = World()
    for seed in range(20):
        for o in w.scene(seed).objects:
            x0, y0, x1, y1 = o.bbox
            cell = 64 / 3
            assert o.col * cell - 1 <= x0 and x1 <= (o.col + 1) * cell + 1
            assert o.row * cell - 1 <= y0 and y1 <= (o.row + 1) * cell + 1


def test_questions_have_correct_answers():
    w = World()
    for seed in range(30):
        sc = w.scene(seed)
        qs = {q.kind: q for q in w.questions(sc, seed)}
        assert set(qs) == set(QUESTION_KINDS)
        assert qs["color"].answer == qs["color"].target.color
        assert qs["color"].target.shape in qs["color"].text
        assert qs["shape"].answer == qs["shape"].target.shape
        assert qs["count"].answer == ["zero", "one", "two", "three", "four"][len(sc.objects)]
        found = parse_description(qs["describe"].answer)
        assert len(found) == len(sc.objects)
        if qs["exists"].answer == "no":
            words = qs["exists"].text.split()
            assert sc.object_by(shape=words[4], color=words[3]) is None
        else:
            assert qs["exists"].target is not None


def test_hard_negatives_mix_present_attributes():
    w = World()
    hard = 0
    total = 0
    rng = np.random.default_rng(0)
    for seed in range(200):
        sc = w.scene(seed, n_objects=3)
        q = w.question(sc, "exists", rng)
        if q.answer == "no":
            total += 1
            _, _, _, color, shape, _ = q.text.split()
            hard += color in {o.color for o in sc.objects} and shape in {o.shape for o in sc.objects}
    assert total > 50 and hard / total > 0.6


def test_object_f1():
    ref = "a red circle at top left , a blue square at middle center ."
    assert object_f1(ref, ref) == 1.0
    assert object_f1("a red circle at top left .", ref) == pytest.approx(2 / 3)
    assert object_f1("a green cross at bottom right .", ref) == 0.0
    assert object_f1("", ref) == 0.0


def test_unknown_kind_and_bad_counts_raise():
    w = World()
    with pytest.raises(ValueError, match="unknown question kind"):
        w.question(w.scene(0), "smell", np.random.default_rng(0))
    with pytest.raises(ValueError, match="objects"):
        w.scene(0, n_objects=len(SHAPES) + 1)


def test_samples_respect_kinds():
    w = World()
    for _, qs in w.samples(3, seed=1, kinds=("color", "count")):
        assert [q.kind for q in qs] == ["color", "count"]


def test_move_object_moves_pixels_mask_and_words():
    from vlmscope.datasets.synthetic import World, move_object

    scene = World().scene(seed=101, n_objects=1)
    obj = scene.objects[0]
    dx, dy = (21 if obj.col < 2 else -21), (21 if obj.row < 2 else -21)
    moved = move_object(scene, 0, dx, dy)
    new = moved.objects[0]
    ys, xs = np.nonzero(obj.mask)
    assert np.array_equal(np.argwhere(new.mask), np.argwhere(obj.mask) + [dy, dx])
    a, b = np.asarray(scene.image), np.asarray(moved.image)
    assert np.array_equal(b[ys + dy, xs + dx], a[ys, xs])  # the object's pixels moved
    gone = obj.mask & ~new.mask
    assert np.abs(b[gone].astype(int) - np.median(a[~obj.mask], axis=0)).max() <= 1  # background
    assert (new.row, new.col) == (obj.row + np.sign(dy), obj.col + np.sign(dx))
    with pytest.raises(ValueError, match="out of the image"):
        move_object(scene, 0, 64, 0)
    two = World().scene(seed=3, n_objects=2)
    o0, o1 = two.objects
    y1, x1 = np.argwhere(o1.mask).mean(0)
    y0, x0 = np.argwhere(o0.mask).mean(0)
    with pytest.raises(ValueError, match="overlaps"):
        move_object(two, 0, int(round(x1 - x0)), int(round(y1 - y0)))


def test_question_templates_are_the_worlds():
    from vlmscope.datasets.synthetic import DESCRIBE, QUESTIONS, describe, question

    assert set(QUESTIONS) == set(QUESTION_KINDS) and QUESTIONS["describe"] == DESCRIBE
    assert question("where", color="red", shape="circle") == "where is the red circle ?"
    assert question("count") == "how many objects are there ?"
    w = World()
    for scene, qs in w.samples(20, seed=4):
        for q in qs:
            if q.target is not None:
                assert q.text == question(q.kind, q.target)
        assert describe(scene.objects) == scene.description()
        assert parse_description(scene.description()) == {
            (o.color, o.shape, *o.where.split()) for o in scene.objects}
    with pytest.raises(ValueError, match="needs an object's shape"):
        question("color")
    with pytest.raises(ValueError, match="unknown question kind"):
        question("size", color="red", shape="circle")
