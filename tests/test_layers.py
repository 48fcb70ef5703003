"""The layering rules of docs/DESIGN.md section 2, checked mechanically on the source.

Every module under src/fedmist is parsed with ``ast`` (never imported); a reference is any ``import`` or
``from ... import`` (top level, inside a function, under ``TYPE_CHECKING``), any ``importlib.import_module("...")``
or ``__import__("...")`` with a literal name, and any literal naming a fedmist module inside a list, tuple or set
(lists of modules imported by name, like the zygote's preload list). A "node" is the first component under
fedmist: a package (``worker``) or a top-level module (``api``, ``imports``).

Rules:
- bottom: ``spec`` and ``wire`` import no torch/torchvision/ultralytics, and from fedmist only the bottom
  layer and the stdlib-only helpers (``imports``, ``atomic``). ``wire`` may import ``spec`` (a message may
  carry names the manifests define); ``spec`` never imports ``wire`` (a manifest knows nothing of the wire).
- leaves: ``imports``, ``atomic`` and ``errors`` import nothing from fedmist (anyone may use them).
- strategy: aggregation is pure -- it imports neither ``transport`` nor ``launch``.
- privacy: privacy mechanisms never import ``transport``.
- models-data: ``models`` and ``data`` never import ``worker`` (runtimes use models and data, not the reverse).
- cli: nothing imports ``cli`` but ``cli`` itself and ``__main__`` (the CLI sits on top; workers start through
  fedmist.worker.main).
- cycles: no import cycle between nodes. References to the ``fedmist`` package itself (``from fedmist import
  __version__``) are not layer dependencies: its ``__init__`` is a lazy facade over ``api``.

Known violations that later work removes are in ALLOWED (one list, each with its reason). The test fails on
any violation not in it AND on any entry that no longer matches a violation, so the list can only shrink.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "fedmist"
HEAVY = frozenset({"torch", "torchvision", "ultralytics"})
LEAVES = frozenset({"imports", "atomic", "errors"})
ROOT = "fedmist"  # the package itself (its __init__)

# (file, rule, referenced module) -> why it is still allowed. Remove an entry when its violation goes away.
ALLOWED: dict[tuple[str, str, str], str] = {}
# Import cycles (the set of nodes of one strongly connected component) still allowed, with the reason.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Ref:
    """One reference from ``file`` (path under src/) at ``line`` to module ``target`` (dotted)."""

    file: str
    line: int
    target: str
    how: str  # "import", "import_module", "name list"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` (``fedmist.x.y``) names a module or package of the source tree."""
    base = SRC.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The modules ``from X import a, b`` refers to: ``X.a`` where that is a module, else ``X``."""
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    out = []
    for alias in node.names:
        full = f"{prefix}.{alias.name}"
        out.append(full if prefix.startswith(ROOT) and _is_module(full) else prefix)
    return out


def _string_arg(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def references(path: Path, root: Path = SRC) -> Iterator[Ref]:
    """Every module ``path`` (a file under ``root``, which holds the fedmist package) refers to, lazily or not."""
    rel = str(path.relative_to(root))
    module = _module_of(SRC / rel)
    tree = ast.parse(path.read_text(), filename=rel)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Ref(rel, node.lineno, alias.name, "import")
        elif isinstance(node, ast.ImportFrom):
            for target in _resolve_from(node, module, path.name == "__init__.py"):
                yield Ref(rel, node.lineno, target, "import")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            target = _string_arg(node)
            if name in ("import_module", "__import__") and target:
                yield Ref(rel, node.lineno, target, "import_module")
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            for element in node.elts:
                if (isinstance(element, ast.Constant) and isinstance(element.value, str)
                        and element.value.startswith(ROOT + ".") and _is_module(element.value)):
                    yield Ref(rel, element.lineno, element.value, "name list")


def node_of_module(dotted: str) -> str | None:
    """``fedmist.worker.main`` -> ``worker``; ``fedmist.api`` -> ``api``; ``fedmist`` -> ROOT; else None."""
    parts = dotted.split(".")
    if parts[0] != ROOT:
        return None
    if len(parts) == 1 or not _is_module(f"{ROOT}.{parts[1]}"):
        return ROOT
    return parts[1]


def node_of_file(rel: str) -> str:
    return node_of_module(_module_of(SRC / rel)) or ROOT


def all_refs() -> list[Ref]:
    """Every reference of every module, each (file, line, target) once."""
    return sorted({ref for path in sorted(PKG.rglob("*.py")) for ref in references(path)},
                  key=lambda r: (r.file, r.line, r.target))


def rule_violations(refs: list[Ref]) -> list[tuple[Ref, str]]:
    """(reference, rule) for every reference that breaks a rule other than the cycle rule."""
    out: list[tuple[Ref, str]] = []
    for ref in refs:
        src = node_of_file(ref.file)
        dst = node_of_module(ref.target)
        top = ref.target.split(".")[0]
        if src in ("spec", "wire"):
            allowed = {"spec", "wire", *LEAVES} if src == "wire" else {"spec", *LEAVES}
            if top in HEAVY or (dst is not None and dst not in allowed):
                out.append((ref, "bottom"))
        if src in LEAVES and dst is not None and dst != src:
            out.append((ref, "leaves"))
        if src == "strategy" and dst in ("transport", "launch"):
            out.append((ref, "strategy"))
        if src == "privacy" and dst == "transport":
            out.append((ref, "privacy"))
        if src in ("models", "data") and dst == "worker":
            out.append((ref, "models-data"))
        if dst == "cli" and src not in ("cli", "__main__"):
            out.append((ref, "cli"))
    return out


def graph(refs: list[Ref]) -> dict[str, dict[str, list[Ref]]]:
    """node -> node it imports -> the references that make the edge (root and self edges left out)."""
    edges: dict[str, dict[str, list[Ref]]] = defaultdict(lambda: defaultdict(list))
    for ref in refs:
        src, dst = node_of_file(ref.file), node_of_module(ref.target)
        if dst is not None and dst not in (src, ROOT):
            edges[src][dst].append(ref)
    return edges


def cycles(edges: dict[str, dict[str, list[Ref]]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(set(edges) | {w for targets in edges.values() for w in targets}):
        if v not in index:
            visit(v)
    return found


def problems(refs: list[Ref]) -> list[str]:
    """Every offending ``file:line: rule`` line, and every stale allowlist entry; empty when all is well."""
    lines: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for ref, rule in rule_violations(refs):
        key = (ref.file, rule, ref.target)
        seen.add(key)
        if key not in ALLOWED:
            lines.append(f"src/{ref.file}:{ref.line}: {rule}: {ref.how} of {ref.target}")
    for key in sorted(set(ALLOWED) - seen):
        lines.append(f"src/{key[0]}: {key[1]}: allowlisted reference to {key[2]} is gone: remove it from ALLOWED")
    edges = graph(refs)
    found = cycles(edges)
    for component in found:
        if component in ALLOWED_CYCLES:
            continue
        for src in sorted(component):  # one line per edge inside the cycle: its first reference
            for dst in sorted(set(edges[src]) & component):
                ref, more = edges[src][dst][0], len(edges[src][dst]) - 1
                cycle = ", ".join(sorted(component))
                lines.append(f"src/{ref.file}:{ref.line}: cycles: {src} -> {dst} ({ref.how} of {ref.target}"
                             + (f"; {more} more" if more else "") + f") in the cycle {{{cycle}}}")
    for component in sorted(set(ALLOWED_CYCLES) - set(found), key=sorted):
        lines.append(f"cycles: allowlisted cycle {{{', '.join(sorted(component))}}} is gone: remove it from "
                     f"ALLOWED_CYCLES")
    return lines


def test_the_source_keeps_the_layering_rules() -> None:
    found = problems(all_refs())
    assert not found, "layering rules broken (docs/DESIGN.md section 2):\n" + "\n".join(found)


def test_every_kind_of_reference_is_seen(tmp_path: Path) -> None:
    """The scanner finds lazy imports, relative imports, import_module/__import__ names and module-name lists:
    a rule it cannot see is no rule."""
    probe = tmp_path / "fedmist" / "models" / "_layers_probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text(
        "import importlib\n"
        "def f():\n"
        "    from ..worker import main\n"
        "    importlib.import_module('fedmist.cli')\n"
        "    __import__('torch')\n"
        "PRELOAD = ('fedmist.launch.zygote', 'not.a.module')\n")
    refs = sorted((r.line, r.target, r.how) for r in references(probe, tmp_path))
    assert refs == [(1, "importlib", "import"), (3, "fedmist.worker.main", "import"),
                    (4, "fedmist.cli", "import_module"), (5, "torch", "import_module"),
                    (6, "fedmist.launch.zygote", "name list")]


def test_a_new_violation_fails_with_its_file_line_and_rule() -> None:
    """Each rule catches a reference added where it does not belong (simulated: extra references appended to
    the real ones), and a new cycle is reported edge by edge."""
    added = [
        Ref("fedmist/spec/job.py", 1, "torch", "import"),
        Ref("fedmist/wire/envelope.py", 2, "fedmist.transport.ws", "import"),
        Ref("fedmist/spec/load.py", 3, "fedmist.wire.envelope", "import"),
        Ref("fedmist/strategy/fedavg.py", 4, "fedmist.launch.local", "import"),
        Ref("fedmist/privacy/channel.py", 5, "fedmist.transport.ws", "import"),
        Ref("fedmist/data/idx.py", 6, "fedmist.worker.main", "import"),
        Ref("fedmist/launch/zygote.py", 7, "fedmist.cli", "name list"),
        Ref("fedmist/imports.py", 8, "fedmist.spec", "import"),
        Ref("fedmist/transport/ws.py", 9, "fedmist.launch.local", "import"),
    ]
    found = "\n".join(problems([*all_refs(), *added]))
    for expected in ("src/fedmist/spec/job.py:1: bottom: import of torch",
                     "src/fedmist/wire/envelope.py:2: bottom: import of fedmist.transport.ws",
                     "src/fedmist/spec/load.py:3: bottom: import of fedmist.wire.envelope",
                     "src/fedmist/strategy/fedavg.py:4: strategy: import of fedmist.launch.local",
                     "src/fedmist/privacy/channel.py:5: privacy: import of fedmist.transport.ws",
                     "src/fedmist/data/idx.py:6: models-data: import of fedmist.worker.main",
                     "src/fedmist/launch/zygote.py:7: cli: name list of fedmist.cli",
                     "src/fedmist/imports.py:8: leaves: import of fedmist.spec",
                     "src/fedmist/transport/ws.py:9: cycles: transport -> launch (import of fedmist.launch.local)",
                     "cycles: launch -> transport"):
        assert expected in found, found
