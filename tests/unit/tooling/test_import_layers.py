"""The import graph of ``services/``, read statically (every ``import`` statement, those
inside functions too, so a lazy import cannot hide a dependency).

The layers, bottom up: ``services.domain`` (the order, its events, the ledger) imports no
other part of Tessera; ``services.store`` imports the domain only; ``services.common``
(conversions, errors, tokens, observability) imports the domain, and the venue's error
table it documents, never the store: what a service reads from the store it reads through
the repositories the store hands out. And no module imports itself back through others.
"""

from __future__ import annotations

import ast
import collections
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[3]
#: Modules ``services.common`` may import outside the domain: the venue's error codes,
#: which the error catalog documents (a table importing only the domain, checked below).
COMMON_MAY_IMPORT = {"services.exchange.aster.errors", "services.exchange.aster", "services.exchange"}


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in (ROOT / "services").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the modules of ``services`` it imports (a package's ``__init__`` included:
    importing ``a.b.c`` runs ``a`` and ``a.b`` first)."""
    modules = _modules()
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                           for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                while target:  # the module and the packages that hold it (but its own)
                    if target in modules and not (name == target or name.startswith(target + ".")):
                        graph[name].add(target)
                    target = target.rpartition(".")[0]
    return graph


def _layer(module: str) -> str:
    return module.split(".")[1] if module.count(".") else module


def _outside(graph: dict[str, set[str]], layer: str) -> dict[str, set[str]]:
    return {module: {t for t in targets if _layer(t) not in (layer, "services") and t != "services"}
            for module, targets in graph.items() if _layer(module) == layer}


def test_the_graph_is_read_from_the_source():
    graph = _graph()
    assert "services.store.models" in graph["services.store.orders"]
    assert "services.domain" in graph["services.store.orders"]
    assert "services.oms.gateway" in graph["services.oms.submission"]  # a relative import


def test_the_domain_imports_no_other_part_of_tessera():
    assert {m: t for m, t in _outside(_graph(), "domain").items() if t} == {}


def test_the_store_imports_the_domain_only():
    outside = _outside(_graph(), "store")
    assert {m: t for m, t in outside.items() if any(_layer(x) != "domain" for x in t)} == {}


def test_common_never_imports_the_store():
    graph = _graph()
    outside = _outside(graph, "common")
    assert not any(_layer(t) == "store" for targets in outside.values() for t in targets)
    wrong = {m: {t for t in targets if _layer(t) != "domain" and t not in COMMON_MAY_IMPORT}
             for m, targets in outside.items()}
    assert {m: t for m, t in wrong.items() if t} == {}
    # ...and the venue's table imports nothing but the domain (and its own packages).
    assert graph["services.exchange.aster.errors"] - COMMON_MAY_IMPORT <= {
        m for m in _modules() if _layer(m) == "domain"}


def test_no_module_imports_itself_back_through_others():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in list(graph):
        if module not in index:
            visit(module)
    assert cycles == []
