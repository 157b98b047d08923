"""The words that name COCO's objects: its 80 names with synonyms, and English plurals.

One vocabulary for the two places that read object names: ``vlmscope.judge``
(``Vocabulary``, the judges' whole-word matching, folds plurals with
``singular``) and ``vlmscope.datasets.coco`` (``object_words``, the words
the object-ablation study accepts for a category). Both import it from here;
it imports nothing of vlmscope, so neither depends on the other.

>>> singular("knives"), COCO_SYNONYMS["couch"]
('knife', ('couch', 'sofa'))
>>> object_words("wine glass")
('wine glass', 'wine glasses')
"""

from __future__ import annotations

__all__ = ["COCO_SYNONYMS", "IRREGULAR_PLURALS", "object_words", "singular"]

# COCO's 80 names with common synonyms (each maps to the canonical name)
COCO_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("person", "people", "man", "men", "woman", "women", "boy", "girl", "child",
               "children", "kid", "player", "guy", "lady", "persons"),
    "bicycle": ("bicycle", "bike"), "car": ("car", "automobile", "sedan"),
    "motorcycle": ("motorcycle", "motorbike"), "airplane": ("airplane", "aeroplane", "plane", "jet"),
    "bus": ("bus",), "train": ("train",), "truck": ("truck", "lorry"), "boat": ("boat", "ship"),
    "traffic light": ("traffic light",), "fire hydrant": ("fire hydrant", "hydrant"),
    "stop sign": ("stop sign",), "parking meter": ("parking meter",), "bench": ("bench",),
    "bird": ("bird",), "cat": ("cat", "kitten"), "dog": ("dog", "puppy"), "horse": ("horse",),
    "sheep": ("sheep", "lamb"), "cow": ("cow", "cattle"), "elephant": ("elephant",),
    "bear": ("bear",), "zebra": ("zebra",), "giraffe": ("giraffe",), "backpack": ("backpack",),
    "umbrella": ("umbrella",), "handbag": ("handbag", "purse"), "tie": ("tie", "necktie"),
    "suitcase": ("suitcase", "luggage"), "frisbee": ("frisbee",), "skis": ("skis", "ski"),
    "snowboard": ("snowboard",), "sports ball": ("ball", "football", "soccer ball", "baseball"),
    "kite": ("kite",), "baseball bat": ("baseball bat", "bat"),
    "baseball glove": ("baseball glove", "glove", "mitt"), "skateboard": ("skateboard",),
    "surfboard": ("surfboard",), "tennis racket": ("tennis racket", "racket", "racquet"),
    "bottle": ("bottle",), "wine glass": ("wine glass",), "cup": ("cup", "mug"),
    "fork": ("fork",), "knife": ("knife", "knives"), "spoon": ("spoon",), "bowl": ("bowl",),
    "banana": ("banana",), "apple": ("apple",), "sandwich": ("sandwich",),
    "orange": ("orange",), "broccoli": ("broccoli",), "carrot": ("carrot",),
    "hot dog": ("hot dog",), "pizza": ("pizza",), "donut": ("donut", "doughnut"),
    "cake": ("cake",), "chair": ("chair",), "couch": ("couch", "sofa"),
    "potted plant": ("potted plant", "plant", "houseplant"), "bed": ("bed",),
    "dining table": ("dining table", "table"), "toilet": ("toilet",), "tv": ("tv", "television"),
    "laptop": ("laptop", "computer"), "mouse": ("mouse",), "remote": ("remote", "remote control"),
    "keyboard": ("keyboard",), "cell phone": ("cell phone", "phone", "cellphone", "smartphone"),
    "microwave": ("microwave",), "oven": ("oven",), "toaster": ("toaster",), "sink": ("sink",),
    "refrigerator": ("refrigerator", "fridge"), "book": ("book",), "clock": ("clock",),
    "vase": ("vase",), "scissors": ("scissors",), "teddy bear": ("teddy bear", "teddy"),
    "hair drier": ("hair drier", "hair dryer"), "toothbrush": ("toothbrush",),
}

# plural -> singular where dropping an ending is wrong
IRREGULAR_PLURALS = {"people": "person", "men": "man", "women": "woman", "children": "child",
                     "knives": "knife", "mice": "mouse", "geese": "goose", "teeth": "tooth",
                     "buses": "bus", "neckties": "necktie", "tvs": "tv"}


def singular(word: str) -> str:
    """A lower-case word's singular ("knives" -> "knife", "benches" -> "bench", "glass" stays)."""
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    # "-ses" is ambiguous (horses, cases vs. glasses): only "-sses" loses "es"
    for suf, rep in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("sses", "ss"), ("xes", "x")):
        if word.endswith(suf) and len(word) > len(suf) + 2:
            return word[: -len(suf)] + rep
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


_PLURAL_OF = {v: k for k, v in IRREGULAR_PLURALS.items()}  # person -> people, knife -> knives, ...
_UNCOUNTABLE = {"sheep", "cattle", "broccoli", "luggage", "deer", "fish", "aircraft"}


def _plural(phrase: str) -> str:
    """The plural of a (multi-word) name: its last word pluralised ("wine glasses")."""
    head, _, last = phrase.rpartition(" ")
    if last in _PLURAL_OF:
        p = _PLURAL_OF[last]
    elif last in _UNCOUNTABLE or singular(last) != last:  # already plural: skis, people
        p = last
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        p = last + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


def object_words(category: str) -> tuple[str, ...]:
    """Words that name a COCO category: the name, its synonyms, and their plurals.

    The synonyms are ``COCO_SYNONYMS`` (the vocabulary the judges match
    with), so ``judge.Vocabulary().objects(w) == {category}`` for
    every word returned. The name comes first, then its plural. A name outside
    COCO's 80 (a custom dataset in COCO format) gives itself and its plural.

    To decide whether a description names the object, match whole words with
    the judge rather than these strings as substrings ("cat" is in
    "location"): ``Vocabulary().mentions(text, item.category)``.

    >>> object_words("person")[:6]
    ('person', 'people', 'man', 'men', 'woman', 'women')
    >>> object_words("wine glass")
    ('wine glass', 'wine glasses')
    """
    name = " ".join(str(category).lower().split())
    out: list[str] = []
    for w in (name, *COCO_SYNONYMS.get(name, ())):
        for form in (w, _plural(w)):
            if form not in out:
                out.append(form)
    return tuple(out)
