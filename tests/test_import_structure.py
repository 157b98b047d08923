"""The library's import structure: no cycle between modules, adapters hold per-family facts only.

The graphs are read from the source with ``ast``. ``import_graph()`` has an
edge for every ``import`` / ``from ... import`` of a vlmscope module, at module
level or inside a function (a deferred import hides a cycle from the
interpreter, not from a reader), to the module it names.
``import_graph(deferred=False, packages=True)`` is what runs while a module is
imported: its module-level imports, and the packages their targets sit in
(importing ``vlmscope.testing.tiny`` runs ``vlmscope/testing/__init__.py``
first). ``import_graph(packages=True)`` is both: every import, deferred or
not, with the packages it runs; a cycle there is one that waits for the
right call (a deferred ``from .datasets.synthetic import ...`` runs
``datasets/__init__``, which imports whatever that imports). The root package
``vlmscope`` is left out: every module is imported through it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import vlmscope

ROOT = Path(vlmscope.__file__).resolve().parent


def modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is_package)}`` of every module under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        if package:
            parts = parts[:-1]
        out[".".join(parts)] = (path, package)
    return out


def _statements(tree, deferred: bool):
    """Import statements of a module; with ``deferred=False`` only those run at import time."""
    if deferred:
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        return
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))


def imports_of(name: str, path: Path, package: bool, known, deferred: bool = True,
               packages: bool = False) -> set[str]:
    """The vlmscope modules that module ``name`` imports (``packages``: and their packages)."""
    here = name.split(".") if package else name.split(".")[:-1]
    found = set()
    for node in _statements(ast.parse(path.read_text(), str(path)), deferred):
        if isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        else:
            found.update(alias.name for alias in node.names)
    ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    edges = set()
    for target in found:
        parts = target.split(".")
        for i in range(len(parts) if not packages else 2, len(parts) + 1):
            mod = ".".join(parts[:i])
            if mod in known and mod not in ancestors:
                edges.add(mod)
    return edges


@lru_cache(maxsize=None)
def import_graph(root: Path = ROOT, deferred: bool = True, packages: bool = False) -> dict[str, set[str]]:
    known = modules(root)
    return {name: imports_of(name, path, package, known, deferred, packages)
            for name, (path, package) in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of ``graph``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_cycle_finder_finds_cycles_and_only_cycles(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    # the graph reader: a deferred import counts in the full graph, not at import time;
    # the packages of a target count at import time; the root package never
    pkg = tmp_path / "lib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("import os\n\ndef f():\n    from .sub.b import y\n")
    (pkg / "sub" / "__init__.py").write_text("from . import c\n")
    (pkg / "sub" / "b.py").write_text("from .. import a\n")
    (pkg / "sub" / "c.py").write_text("from lib import a\n")
    graph = import_graph(pkg)
    assert graph["lib.a"] == {"lib.sub.b"}
    assert graph["lib.sub.b"] == {"lib.a"}
    assert graph["lib.sub"] == {"lib.sub.c"}
    assert find_cycle(graph) == ["lib.a", "lib.sub.b", "lib.a"]
    at_import = import_graph(pkg, deferred=False, packages=True)
    assert at_import["lib.a"] == set() and at_import["lib.sub.b"] == {"lib.a"}
    assert find_cycle(at_import) is None
    (pkg / "a.py").write_text("from .sub.b import y\n")
    import_graph.cache_clear()
    at_import = import_graph(pkg, deferred=False, packages=True)
    assert at_import["lib.a"] == {"lib.sub", "lib.sub.b"}
    assert find_cycle(at_import) == ["lib.a", "lib.sub", "lib.sub.c", "lib.a"]


def test_a_cycle_through_a_package_init_and_a_deferred_import_is_found(tmp_path):
    """``j`` defers an import of ``d.s``; ``d/__init__`` imports ``d.c`` eagerly; ``d.c``
    imports ``j``: no module imports another in a cycle, nothing cycles at import time,
    yet calling ``j.f`` first runs ``d/__init__``, ``d.c`` and ``j`` again."""
    pkg = tmp_path / "lib"
    (pkg / "d").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "j.py").write_text("def f():\n    from .d.s import g\n")
    (pkg / "d" / "__init__.py").write_text("from .c import h\n")
    (pkg / "d" / "s.py").write_text("")
    (pkg / "d" / "c.py").write_text("from ..j import f\n")
    assert find_cycle(import_graph(pkg)) is None
    assert find_cycle(import_graph(pkg, deferred=False, packages=True)) is None
    assert find_cycle(import_graph(pkg, packages=True)) == ["lib.d", "lib.d.c", "lib.j", "lib.d"]
    (pkg / "d" / "c.py").write_text("from .s import g\n")  # the shared piece moves below both
    import_graph.cache_clear()
    assert find_cycle(import_graph(pkg, packages=True)) is None


def test_no_import_cycle_between_library_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_cycle_while_importing():
    cycle = find_cycle(import_graph(deferred=False, packages=True))
    assert cycle is None, "import cycle at import time: " + " -> ".join(cycle)


def test_no_import_cycle_between_packages_counting_deferred_imports():
    cycle = find_cycle(import_graph(packages=True))
    assert cycle is None, "import cycle through a package: " + " -> ".join(cycle)


FAMILY_MODULES = sorted(n for n in modules() if n.startswith("vlmscope.adapters.")
                        and n.rsplit(".", 1)[1] not in ("base", "_grid"))


@pytest.mark.parametrize("name", FAMILY_MODULES)
def test_an_adapter_imports_no_other_adapter_and_no_builder(name):
    """Adapters hold per-family facts: shared helpers come from ``base`` and ``_grid`` only;
    tiny-model builders, templates and the organism package are ``vlmscope.testing``'s."""
    graph = import_graph()
    bad = sorted(m for m in graph[name]
                 if (m in FAMILY_MODULES and m != name)
                 or m.startswith(("vlmscope.testing", "vlmscope.organism")))
    assert not bad, f"{name} imports {bad}"


@pytest.mark.parametrize("name", sorted(n for n in modules() if n.startswith("vlmscope.datasets")))
def test_datasets_read_images_without_the_model_code(name):
    assert "vlmscope.models" not in import_graph()[name], f"{name} imports vlmscope.models"


@pytest.mark.slow
@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_module_imports_in_a_fresh_interpreter(order):
    """Each module imports on its own terms, whichever is imported first (``__main__`` runs
    the command line, so it is left out)."""
    names = sorted(n for n in modules() if not n.endswith("__main__"))
    if order == "reversed":
        names.reverse()
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]


# ---------------------------------------------------- the picture in docs/architecture.md
ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
_TOKEN = re.compile(r"^[A-Za-z_<][\w<>./]*(\.py|/)$")


def picture(text: str | None = None) -> list[tuple[str, list[str], set[str] | None]]:
    """The layers of the first code block under "## Layers": ``(layer, module tokens,
    the layers it says it imports or None)`` per layer. A layer's line starts with its
    number (or ``beside``); the lines below it, indented, carry on its text. Tokens
    ending in ``.py`` or ``/`` name files and packages under ``lib/vlmscope``
    (``<name>`` stands for any name); ``→ 0 1 2`` on the layer's line lists the layers
    its modules import (``→`` alone: none)."""
    text = ARCHITECTURE.read_text() if text is None else text
    block = re.split(r"^## Layers$", text, maxsplit=1, flags=re.M)[1].split("```", 2)[1]
    rows = []
    for line in block.splitlines():
        words = line.split()
        if words and not line[0].isspace() and (words[0].isdigit() or words[0] == "beside"):
            mods, arrow, said = line.split(maxsplit=1)[1].partition("→")
            rows.append((words[0], [], {w for w in said.split()} if arrow else None))
        elif not rows or not words:
            continue
        else:
            mods = line
        rows[-1][1].extend(t.strip("`,;()") for t in mods.split() if _TOKEN.match(t.strip("`,;()")))
    return rows


def _pattern(token: str) -> re.Pattern:
    """A token as a regular expression over paths relative to ``lib/vlmscope``."""
    body = re.escape(token).replace(re.escape("<name>"), r"[^/]+")
    return re.compile(body + (".*" if token.endswith("/") else "") + "$")


def layer_of(rows) -> dict[str, str]:
    """Each library module's layer: the most specific token that covers its file."""
    out = {}
    for name, (path, _package) in modules().items():
        rel = path.relative_to(ROOT).as_posix()
        hits = [(not t.endswith("/"), len(t), layer) for layer, toks, _ in rows for t in toks
                if _pattern(t).match(rel)]
        if hits:
            out[name] = max(hits)[2]
    return out


def test_the_picture_names_every_module_and_only_modules():
    rows = picture()
    numbered = [r[0] for r in rows if r[0] != "beside"]
    assert numbered == [str(i) for i in range(len(numbered) - 1, -1, -1)], "layers top to 0"
    files = [p.relative_to(ROOT).as_posix() for p, _ in modules().values()]
    unknown = [t for _, toks, _ in rows for t in toks
               if not any(_pattern(t).match(f) for f in files)]
    assert not unknown, f"the picture names what is not in lib/vlmscope: {unknown}"
    missing = sorted(set(modules()) - set(layer_of(rows)))
    assert not missing, f"library modules missing from the picture: {missing}"


def test_the_picture_reads_the_import_graph_and_each_layer_imports_only_below():
    """Every import (deferred included) goes to the same layer or one below, ``testing``
    (beside the layers) is imported by the command line only, and each line's ``→``
    lists exactly the layers its modules import."""
    rows = picture()
    layer = layer_of(rows)
    top = max(int(r[0]) for r in rows if r[0] != "beside")
    rank = {str(i): i for i in range(top + 1)}
    upward, used = [], {}
    for a, targets in import_graph().items():
        for b in targets:
            la, lb = layer[a], layer[b]
            if la != "beside" and (lb == "beside" and la != str(top)
                                   or lb != "beside" and rank[lb] > rank[la]):
                upward.append(f"{a} ({la}) -> {b} ({lb})")
            if lb != la:
                used.setdefault(la, set()).add(lb)
    assert not upward, "imports against the picture's layers: " + "; ".join(sorted(upward))
    for la, _toks, said in rows:
        if said is not None:
            got = used.get(la, set())
            assert said == got, f"layer {la} says → {sorted(said)}, imports {sorted(got)}"


def test_the_picture_reader_reads_layers_tokens_and_arrows():
    text = "## Layers\n```\n1  b.py  → 0\n   what b does, d.py\n0  a.py  c/<name>.py  →\n```\n"
    rows = picture(text)
    assert rows == [("1", ["b.py", "d.py"], {"0"}), ("0", ["a.py", "c/<name>.py"], set())]
    assert _pattern("c/<name>.py").match("c/x.py") and not _pattern("c/<name>.py").match("c/d/x.py")
    assert _pattern("c/").match("c/d/x.py") and not _pattern("a.py").match("ba.py")
