"""The package's layers import only downward, without cycles, and no module reaches for another's private names.

Layers, lowest first (a module may import its own layer, without cycles, or a lower one, never a higher one):

  0 base             knowtune/__init__.py, errors, io, config, httplimits, progress, text
  1 data and models  knowtune/data/*, knowtune/models/*
  2 eval             knowtune/eval/*, knowtune/rag/*, knowtune/augment/*
  3 train            knowtune/train/** (methods and the run lifecycle)
  4 front ends       knowtune/cli.py, knowtune/web/*, knowtune/serve/*

Every `import` and `from ... import` anywhere in a file counts: at module level, inside functions, under
`if TYPE_CHECKING:`. A lazy import is still an edge. Relative imports are resolved. Pure `ast`: nothing of the
package is imported, so the test is fast and works while a module is broken.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "knowtune"

# (layer name, module patterns). "x" is the module x; "x.*" is the package x and its modules one level down;
# "x.**" is the package x and everything below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("knowtune", "knowtune.errors", "knowtune.io", "knowtune.config", "knowtune.httplimits",
              "knowtune.progress", "knowtune.text")),
    ("data and models", ("knowtune.data.*", "knowtune.models.*")),
    ("eval", ("knowtune.eval.*", "knowtune.rag.*", "knowtune.augment.*")),
    ("train", ("knowtune.train.**",)),
    ("front ends", ("knowtune.cli", "knowtune.web.*", "knowtune.serve.*")),
]


# ----------------------------------------------------------------------------------------------- the checker

def _matches(module: str, pattern: str) -> bool:
    if pattern.endswith(".**"):
        base = pattern[:-3]
        return module == base or module.startswith(base + ".")
    if pattern.endswith(".*"):
        base = pattern[:-2]
        return module == base or (module.startswith(base + ".") and "." not in module[len(base) + 1:])
    return module == pattern


def layer_of(module: str) -> int | None:
    for index, (_, patterns) in enumerate(LAYERS):
        if any(_matches(module, p) for p in patterns):
            return index
    return None


def _describe(module: str) -> str:
    layer = layer_of(module)
    return f"{module} (layer {layer} {LAYERS[layer][0]!r})" if layer is not None else module


def _in_order(problems: list[str]) -> list[str]:
    """Sorted by file, then line ("path:line: ...")."""
    def key(problem: str):
        path, _, rest = problem.partition(":")
        line = rest.split(":", 1)[0]
        return (path, int(line) if line.isdigit() else 0, problem)
    return sorted(problems, key=key)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True)
class Module:
    name: str          # knowtune.data.knowledge
    path: str          # what messages show: src/knowtune/data/knowledge.py
    is_package: bool   # an __init__.py
    tree: ast.Module


@dataclass(frozen=True)
class Edge:
    path: str
    line: int
    importer: str      # the importing module (a file's name for tests and benchmarks)
    target: str        # the knowtune module imported
    name: str | None   # the name taken from `target` by a from-import (None when the name is a module itself)


def module_name(relative: str) -> tuple[str, bool]:
    """'knowtune/data/x.py' -> ('knowtune.data.x', False); 'knowtune/data/__init__.py' -> ('knowtune.data', True)."""
    parts = list(Path(relative).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def parse_sources(sources: dict[str, str], shown_as: str = "") -> tuple[dict[str, Module], list[str]]:
    """{'knowtune/data/x.py': source} -> modules by name, plus the files that do not parse."""
    modules: dict[str, Module] = {}
    problems: list[str] = []
    for relative, text in sorted(sources.items()):
        name, is_package = module_name(relative)
        path = shown_as + relative
        try:
            tree = ast.parse(text, filename=path)
        except SyntaxError as exc:
            problems.append(f"{path}:{exc.lineno}: does not parse ({exc.msg}), so its imports cannot be checked")
            continue
        modules[name] = Module(name, path, is_package, tree)
    return modules, problems


def package_sources(src: Path = SRC) -> dict[str, str]:
    return {p.relative_to(src).as_posix(): p.read_text(encoding="utf-8") for p in sorted((src / PACKAGE).rglob("*.py"))}


def _from_base(node: ast.ImportFrom, importer: str | None, is_package: bool) -> str | None:
    """The absolute module of `from X import ...`, relative ones resolved against the importer."""
    if not node.level:
        return node.module
    if importer is None:
        return None
    parts = importer.split(".")
    if not is_package:
        parts = parts[:-1]
    if node.level - 1 > len(parts) - 1:
        return None
    if node.level > 1:
        parts = parts[:-(node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _is_ours(name: str | None) -> bool:
    return bool(name) and (name == PACKAGE or name.startswith(PACKAGE + "."))


def imports_of(tree: ast.AST, path: str, importer: str | None, is_package: bool, known: set[str]) -> list[Edge]:
    """Every import of a knowtune module anywhere in the tree (module level, functions, TYPE_CHECKING blocks)."""
    edges: list[Edge] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_ours(alias.name):
                    edges.append(Edge(path, node.lineno, importer or path, alias.name, None))
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, importer, is_package)
            if not _is_ours(base):
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:
                    edges.append(Edge(path, node.lineno, importer or path, submodule, None))
                else:
                    edges.append(Edge(path, node.lineno, importer or path, base,
                                      None if alias.name == "*" else alias.name))
    return edges


def all_edges(modules: dict[str, Module]) -> list[Edge]:
    known = set(modules)
    return [e for m in modules.values() for e in imports_of(m.tree, m.path, m.name, m.is_package, known)]


def unlayered_modules(modules: dict[str, Module]) -> list[str]:
    return [f"{m.path}: module {m.name} is in no layer; add it to LAYERS in tests/test_layers.py "
            f"(and to the layer table in ARCHITECTURE.md)" for m in modules.values() if layer_of(m.name) is None]


def missing_targets(modules: dict[str, Module]) -> list[str]:
    return _in_order([f"{e.path}:{e.line}: {e.importer} imports {e.target}, which no file in src/knowtune defines"
                      for e in all_edges(modules) if e.target not in modules])


def upward_imports(modules: dict[str, Module]) -> list[str]:
    problems = []
    for e in all_edges(modules):
        low, high = layer_of(e.importer), layer_of(e.target)
        if low is not None and high is not None and high > low:
            problems.append(f"{e.path}:{e.line}: {_describe(e.importer)} imports {_describe(e.target)}, "
                            f"a higher layer")
    return _in_order(problems)


def import_cycles(modules: dict[str, Module]) -> list[str]:
    """Each strongly connected group of knowtune modules, shown as one cycle through it with file:line per step."""
    graph: dict[str, dict[str, Edge]] = {name: {} for name in modules}
    for e in all_edges(modules):
        if e.target in modules and e.target != e.importer:
            graph[e.importer].setdefault(e.target, e)

    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def strongconnect(start: str) -> None:  # Tarjan, iterative
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            strongconnect(name)

    problems = []
    for group in sorted(groups):
        members = set(group)
        first = group[0]
        # shortest way from `first` back to itself inside the group
        previous: dict[str, str] = {}
        frontier = [first]
        found = None
        while frontier and found is None:
            following = []
            for node in frontier:
                for child in sorted(graph[node]):
                    if child not in members:
                        continue
                    if child == first:
                        found = node
                        break
                    if child not in previous:
                        previous[child] = node
                        following.append(child)
                if found is not None:
                    break
            frontier = following
        path = [first]
        node = found
        while node != first:
            path.append(node)
            node = previous[node]
        path = [first] + path[1:][::-1] + [first]
        steps = "; ".join(f"{graph[a][b].path}:{graph[a][b].line} {a} -> {b}" for a, b in zip(path, path[1:]))
        others = f" (the cycle's group also holds {', '.join(sorted(members - set(path)))})" if members - set(path) else ""
        problems.append(f"import cycle {' -> '.join(path)}: {steps}{others}")
    return problems


def private_uses(tree: ast.AST, path: str, importer: str | None, is_package: bool, known: set[str]) -> list[str]:
    """`from knowtune.x import _y`, and `x._y` where x is a knowtune module bound by an import."""
    problems = []
    for e in imports_of(tree, path, importer, is_package, known):
        if e.name is not None and _is_private(e.name) and e.target != importer:
            problems.append(f"{path}:{e.line}: imports the private name {e.name} from {e.target}; "
                            f"make it public or test through the public function")
        elif e.name is None and _is_private(e.target.rsplit(".", 1)[-1]) and not e.target.startswith(f"{importer}."):
            problems.append(f"{path}:{e.line}: imports the private module {e.target}")

    # names bound to knowtune modules: `import knowtune.a.b` binds knowtune, `import knowtune.a as m` binds m,
    # `from knowtune.a import b` binds b when b is a module
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_ours(alias.name):
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, importer, is_package)
            if _is_ours(base):
                for alias in node.names:
                    if f"{base}.{alias.name}" in known:
                        bound[alias.asname or alias.name] = f"{base}.{alias.name}"

    def module_at(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return bound.get(node.id)
        if isinstance(node, ast.Attribute):
            parent = module_at(node.value)
            if parent is not None and f"{parent}.{node.attr}" in known:
                return f"{parent}.{node.attr}"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            owner = module_at(node.value)
            if owner is not None and owner != importer and f"{owner}.{node.attr}" not in known:
                problems.append(f"{path}:{node.lineno}: uses the private name {owner}.{node.attr}; "
                                f"make it public or test through the public function")
    return problems


def check_private(modules: dict[str, Module], others: dict[str, ast.Module]) -> list[str]:
    known = set(modules)
    problems = []
    for m in modules.values():
        problems += private_uses(m.tree, m.path, m.name, m.is_package, known)
    for path, tree in others.items():
        problems += private_uses(tree, path, None, False, known)
    return _in_order(problems)


def check(sources: dict[str, str], others: dict[str, str] | None = None, shown_as: str = "") -> dict[str, list[str]]:
    """All checks over {path under src: source} of the package and, for private names only, `others`
    ({path: source} of tests and benchmarks)."""
    modules, unparsed = parse_sources(sources, shown_as)
    trees = {}
    for path, text in (others or {}).items():
        try:
            trees[path] = ast.parse(text, filename=path)
        except SyntaxError as exc:
            unparsed.append(f"{path}:{exc.lineno}: does not parse ({exc.msg})")
    return {"unparsed": unparsed, "unlayered": unlayered_modules(modules), "missing": missing_targets(modules),
            "upward": upward_imports(modules), "cycles": import_cycles(modules),
            "private": check_private(modules, trees)}


# ------------------------------------------------------------------------------------------- the real package

def _outside_files() -> dict[str, str]:
    files = sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in files}


_RESULT: dict[str, list[str]] | None = None


def _result() -> dict[str, list[str]]:
    global _RESULT
    if _RESULT is None:
        _RESULT = check(package_sources(), _outside_files(), shown_as="src/")
    return _RESULT


def _report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(problems)


def test_every_file_parses():
    problems = _result()["unparsed"]
    assert not problems, _report(problems, "files that do not parse")


def test_every_module_has_a_layer():
    problems = _result()["unlayered"]
    assert not problems, _report(problems, "modules in no layer")


def test_imports_name_modules_that_exist():
    problems = _result()["missing"]
    assert not problems, _report(problems, "imports of modules that do not exist")


def test_no_import_from_a_higher_layer():
    problems = _result()["upward"]
    assert not problems, _report(problems, "imports from a higher layer (move the helper down to where it belongs)")


def test_no_import_cycles():
    problems = _result()["cycles"]
    assert not problems, _report(problems, "import cycles among knowtune modules")


def test_no_private_names_of_other_modules():
    problems = _result()["private"]
    assert not problems, _report(problems, "uses of another module's private names")


# ------------------------------------------------------------------------- the checker catches what it should

PLANTED = {
    "knowtune/__init__.py": '"""pkg"""\n',
    "knowtune/errors.py": "class KnowtuneError(Exception):\n    pass\n",
    "knowtune/data/__init__.py": "",
    "knowtune/data/knowledge.py": "from knowtune.errors import KnowtuneError\n",
    "knowtune/eval/__init__.py": "",
    "knowtune/eval/audit.py": "from ..data.knowledge import KnowtuneError\n",
    "knowtune/train/__init__.py": "",
    "knowtune/train/sft.py": "from . import tokenize\n",
    "knowtune/train/tokenize.py": "def encode():\n    pass\n",
}


def _planted(**changes: str) -> dict[str, list[str]]:
    return check({**PLANTED, **changes})


def test_checker_passes_a_clean_package():
    assert _planted() == {k: [] for k in ("unparsed", "unlayered", "missing", "upward", "cycles", "private")}


def test_checker_finds_a_planted_upward_import():
    found = _planted(**{"knowtune/data/knowledge.py": "import os\n\n\ndef f():\n    from knowtune.eval import audit\n"})
    assert found["upward"] == ["knowtune/data/knowledge.py:5: knowtune.data.knowledge (layer 1 'data and models') "
                               "imports knowtune.eval.audit (layer 2 'eval'), a higher layer"]
    # the planted edge closes a cycle too: audit imports knowledge
    assert len(found["cycles"]) == 1 and "knowtune.data.knowledge -> knowtune.eval.audit" in found["cycles"][0]


def test_checker_finds_upward_relative_and_type_checking_imports():
    found = _planted(**{
        "knowtune/errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .train.sft import x\n",
        "knowtune/data/knowledge.py": "from ..eval.audit import y\nimport knowtune.train.tokenize as t\n",
    })
    lines = sorted(p.split(": ", 1)[0] for p in found["upward"])
    assert lines == ["knowtune/data/knowledge.py:1", "knowtune/data/knowledge.py:2", "knowtune/errors.py:3"]


def test_checker_finds_a_planted_cycle_within_one_layer():
    found = _planted(**{"knowtune/train/tokenize.py": "def encode():\n    from knowtune.train.sft import run\n"})
    assert found["upward"] == []
    assert found["cycles"] == ["import cycle knowtune.train.sft -> knowtune.train.tokenize -> knowtune.train.sft: "
                               "knowtune/train/sft.py:1 knowtune.train.sft -> knowtune.train.tokenize; "
                               "knowtune/train/tokenize.py:2 knowtune.train.tokenize -> knowtune.train.sft"]


def test_checker_finds_private_names_and_unknown_modules():
    found = check({**PLANTED,
                   "knowtune/eval/audit.py": "from knowtune.data.knowledge import _hidden, __all__\n",
                   "knowtune/shiny.py": "import knowtune.eval.scoring\n"},
                  others={"tests/test_x.py": "from knowtune.train import sft\nimport knowtune.data.knowledge as k\n"
                                             "sft._build(k._norm, sft.__name__)\n"})
    assert found["private"] == [
        "knowtune/eval/audit.py:1: imports the private name _hidden from knowtune.data.knowledge; "
        "make it public or test through the public function",
        "tests/test_x.py:3: uses the private name knowtune.data.knowledge._norm; "
        "make it public or test through the public function",
        "tests/test_x.py:3: uses the private name knowtune.train.sft._build; "
        "make it public or test through the public function"]
    assert found["unlayered"] == ["knowtune/shiny.py: module knowtune.shiny is in no layer; add it to LAYERS in "
                                  "tests/test_layers.py (and to the layer table in ARCHITECTURE.md)"]
    assert found["missing"] == ["knowtune/shiny.py:1: knowtune.shiny imports knowtune.eval.scoring, which no file "
                                "in src/knowtune defines"]


def test_layer_table():
    assert layer_of("knowtune") == 0 and layer_of("knowtune.text") == 0
    assert layer_of("knowtune.data") == 1 and layer_of("knowtune.models.load") == 1
    assert layer_of("knowtune.data.general.x") is None           # data/* is one level deep
    assert layer_of("knowtune.train.methods.ppo") == 3           # train/** is any depth
    assert layer_of("knowtune.cli") == 4 and layer_of("knowtune.serve.app") == 4
    assert layer_of("knowtune.unknown") is None
