"""Answer correctness and object-list F1, deterministic by default.

Matching is by whole words (never substrings: "cat" is not in "location",
"yes" is not in "eyes"), with plurals and a synonym list for COCO-style object
names. Object lists come from a vocabulary: the synthetic world's exact
objects for the organism, or COCO's names (with synonyms) for photographs.

Two rules for the organism: ``IdentityJudge`` (Kaduri et al.'s rule, the
default where their figure is reproduced: an object is what it is, its shape;
colours, attributes and positions are ignored, as their released judge
prompt asks) and ``ExactJudge`` (ours, stricter: exact (colour, shape, row,
column) tuples). For photographs ``VocabularyJudge`` already judges by
identity (the COCO category). ``paper_judge`` picks the paper's rule.

``LLMJudge`` is the optional alternative Kaduri et al. used ("an LLM judge
extracts object lists"): any OpenAI-compatible chat-completions endpoint you
configure, with the same ``objects`` / ``compare`` interface, so
``knockout_sweep(vlm, image, judge=LLMJudge(...))`` works unchanged.
"""

from __future__ import annotations

import json
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field

# the COCO vocabulary lives with the data set's words; importable from here as before
from .datasets.coco_names import COCO_SYNONYMS, singular
from .datasets.synthetic import is_synthetic, parse_description


def words(text: str) -> list[str]:
    """Lower-case whole words."""
    return re.findall(r"[a-z]+", text.lower())


@dataclass(frozen=True)
class Vocabulary:
    """Canonical object names and the phrases (1-3 words) that name them."""

    synonyms: dict = field(default_factory=lambda: dict(COCO_SYNONYMS))

    def objects(self, text: str) -> set[str]:
        """Canonical objects named in ``text`` (whole words, plurals folded)."""
        toks = [singular(w) for w in words(text)]
        found = set()
        phrases = {}
        for canon, names in self.synonyms.items():
            for n in names:
                phrases[tuple(singular(w) for w in words(n))] = canon
        longest = max(len(p) for p in phrases)
        i = 0
        while i < len(toks):
            for n in range(longest, 0, -1):
                canon = phrases.get(tuple(toks[i:i + n]))
                if canon:
                    found.add(canon)
                    i += n
                    break
            else:
                i += 1
        return found

    def mentions(self, text: str, obj: str) -> bool:
        """Whether ``text`` names ``obj`` (canonical name) as a whole word or synonym."""
        return obj in self.objects(text)


def f1(predicted: set, reference: set) -> dict:
    """Precision, recall and F1 of two object sets (1.0 when both are empty)."""
    if not predicted and not reference:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 0, "fp": 0, "fn": 0}
    tp = len(predicted & reference)
    p = tp / len(predicted) if predicted else 0.0
    r = tp / len(reference) if reference else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if tp else 0.0, "tp": tp,
            "fp": len(predicted - reference), "fn": len(reference - predicted)}


class ExactJudge:
    """Judge for the synthetic world: objects are (colour, shape, row, col) tuples."""

    name = "exact"

    def objects(self, text: str) -> set:
        return parse_description(text)

    def compare(self, predicted: str, reference: str) -> dict:
        return f1(self.objects(predicted), self.objects(reference))


class IdentityJudge:
    """Judge for the synthetic world by object identity: the set of shapes named.

    Kaduri et al.'s judge (their released GPT-4 prompt) lists the physical
    objects of each description and ignores "colors or other attributes, or
    even positioning"; on the organism an object's identity is its shape.
    "a red circle at top left and a blue circle at bottom right" names one
    object, circle, as their judge would list it.
    """

    name = "identity"

    def objects(self, text: str) -> set:
        return {shape for _colour, shape, *_place in parse_description(text)}

    def compare(self, predicted: str, reference: str) -> dict:
        return f1(self.objects(predicted), self.objects(reference))


class VocabularyJudge:
    """Judge for photographs: object names from a vocabulary (COCO by default)."""

    name = "vocabulary"

    def __init__(self, vocabulary: Vocabulary | None = None):
        self.vocabulary = vocabulary or Vocabulary()

    def objects(self, text: str) -> set:
        return self.vocabulary.objects(text)

    def compare(self, predicted: str, reference: str) -> dict:
        return f1(self.objects(predicted), self.objects(reference))


class JudgeError(RuntimeError):
    """The LLM judge could not be reached, refused the request, or gave an unreadable reply."""


JUDGE_PROMPT = (
    "You extract the physical objects named in an image description. Reply with JSON only, "
    'exactly {"objects": ["name", ...]}: each object once, singular, lower case, as a short noun '
    "phrase without colours, counts or places (\"two red cars on the left\" -> \"car\"). "
    'Nothing named: {"objects": []}.'
)


def _is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine (127.0.0.0/8, ::1 or localhost), by its literal name."""
    import ipaddress
    import urllib.parse

    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class LLMJudge:
    """Object lists extracted by an LLM behind an OpenAI-compatible chat-completions endpoint.

    Descriptions are sent to the server you name and nowhere else; there is no
    default server. Replies are cached per text, so a sweep that compares many
    texts with one baseline asks about the baseline once.

    Parameters
    ----------
    base_url : the API root, e.g. ``"http://127.0.0.1:8000/v1"`` (a local vLLM or
        llama.cpp server); requests go to ``base_url + "/chat/completions"``.
    model : the model name the server expects.
    api_key : bearer token; by default read from ``$VLMSCOPE_JUDGE_API_KEY``
        (``api_key_env``). None and no variable: no Authorization header.
    timeout : seconds to wait for one reply.

    >>> judge = LLMJudge("http://127.0.0.1:8000/v1", "qwen2.5-7b-instruct")  # doctest: +SKIP
    >>> judge.compare("a dog and two cats", "a cat on a sofa")               # doctest: +SKIP
    {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'tp': 1, 'fp': 1, 'fn': 1}
    """

    name = "llm"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 api_key_env: str = "VLMSCOPE_JUDGE_API_KEY", timeout: float = 60.0,
                 prompt: str = JUDGE_PROMPT):
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                             f"not {base_url!r}")
        if not model:
            raise ValueError("name the judge model the server expects (model=...)")
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if key and base_url.startswith("http://") and not _is_loopback(base_url):
            raise ValueError(f"refusing to send an API key over plain http to {base_url}: use "
                             "https://, or a server on this machine (127.0.0.1, ::1, localhost)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = key
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.prompt = prompt
        self.requests = 0  # replies fetched (cache misses)
        self._cache: dict[str, frozenset] = {}

    def __repr__(self) -> str:
        return f"LLMJudge({self.url!r}, model={self.model!r})"  # never the key

    def objects(self, text: str) -> set[str]:
        """Object names in ``text``, singular and lower case (one request per new text)."""
        if text not in self._cache:
            self._cache[text] = frozenset(self._parse(self._ask(text)))
        return set(self._cache[text])

    def compare(self, predicted: str, reference: str) -> dict:
        return f1(self.objects(predicted), self.objects(reference))

    # --------------------------------------------------------------- transport
    def _ask(self, text: str) -> str:
        """The assistant message content of one chat completion for ``text``."""
        body = {"model": self.model, "temperature": 0,
                "messages": [{"role": "system", "content": self.prompt},
                             {"role": "user", "content": f"Description:\n{text}"}]}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
        self.requests += 1
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            hint = (f" (check the API key: api_key=... or ${self.api_key_env})"
                    if e.code in (401, 403) else "")
            raise JudgeError(f"judge endpoint {self.url} answered HTTP {e.code}{hint}: "
                             f"{detail}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise JudgeError(f"could not reach the judge endpoint {self.url} within "
                             f"{self.timeout}s: {reason}") from None
        try:
            return json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise JudgeError(f"unparsable reply from {self.url}: not a chat completion: "
                             f"{raw[:200]!r}") from None

    def _parse(self, content: str) -> set[str]:
        """``{"objects": [...]}`` (or a bare list), code fences allowed; names normalised."""
        fenced = re.search(r"```(?:json)?\s*(.*?)```", content or "", re.S)
        try:
            data = json.loads(fenced.group(1) if fenced else content)
        except (TypeError, ValueError):
            raise JudgeError(f"unparsable reply from {self.url}: expected JSON "
                             f'{{"objects": [...]}}, got {str(content)[:200]!r}') from None
        names = data.get("objects") if isinstance(data, dict) else data
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise JudgeError(f"unparsable reply from {self.url}: expected a list of object "
                             f"names, got {str(content)[:200]!r}")
        out = {" ".join(singular(w) for w in words(n)) for n in names}
        out.discard("")
        return out


def judge_for(data, identity: bool = False):
    """The object judge the data calls for (the one place this is decided; the model plays no part).

    ``data``: a synthetic ``Scene``, an image, an annotated ``ImageRecord``
    (``datasets.folder``), or a list of these. Synthetic scenes (and images
    rendered by the synthetic world) get exact (colour, shape, place)
    objects, or object identities (shapes: Kaduri et al.'s rule) with
    ``identity=True``; annotated images get their objects' names (with the
    words naming them); any other image the COCO vocabulary.
    """
    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if all(is_synthetic(d) or hasattr(d, "object_by") for d in items):
        return IdentityJudge() if identity else ExactJudge()
    annotated = [d for d in items if hasattr(d, "objects") and not hasattr(d, "object_by")]
    if annotated:
        names = {o.name.lower(): tuple(o.words) for d in annotated for o in d.objects}
        return VocabularyJudge(Vocabulary(synonyms=names))
    return VocabularyJudge()


def default_judge(vlm=None, data=None) -> ExactJudge | VocabularyJudge:
    """The judge the data calls for (``judge_for``): exact objects for scenes of the synthetic
    world, the COCO vocabulary for anything else (photographs).

    ``data``: a synthetic ``Scene`` or an image. The model (``vlm``) plays no
    part: the same organism loaded by name or by path is judged alike.
    """
    return VocabularyJudge() if data is None else judge_for(data)


def paper_judge(synthetic: bool) -> IdentityJudge | VocabularyJudge:
    """Kaduri et al.'s judging rule: object identities (the shape for synthetic scenes, the COCO
    category for photographs), never colours, attributes or positions."""
    return IdentityJudge() if synthetic else VocabularyJudge()
