"""The package's import graph: no cycle, and every module imports only its own layer or below.

Parsed from the source (every ``import`` statement, including those inside functions), so
a lazy import that closes a loop is caught as well as a top-level one.
"""

from __future__ import annotations

import ast
import pathlib

import focal_array

PACKAGE = pathlib.Path(focal_array.__file__).parent

#: Bottom to top (DESIGN.md): a module may import modules of its own layer or lower ones.
LAYERS = [
    {"_namespace", "_validate", "_typing"},
    {"_stable"},
    {"_formulas"},
    {"_executors"},
    {"losses", "_loss_checks", "_loss_reductions", "gradients", "normalization", "boxes",
     "box_coder", "_box_common", "anchors", "coco", "_coco_parse", "_coco_records",
     "matcher", "_matching", "_match_iou", "focal_variants", "_variant_checks",
     "_rcnn_sampling", "assigners", "_assign_fcos", "_assign_atss", "_assign_tal",
     "_match_targets", "_detection_boxes", "keras", "_softmax_inputs", "torch"},
    {"detection", "_detection_assign", "_detection_checks", "rcnn", "_rcnn_targets"},
    {"cli", "_cli_stats", "_cli_memory", "_cli_report", "_cli_progress", "__init__"},
]


def _module_name(path: pathlib.Path) -> str:
    """Dotted name below the package; the package itself is "__init__"."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__init__"


def _exists(parts: list[str]) -> bool:
    p = PACKAGE.joinpath(*parts)
    return bool(parts) and (p.with_suffix(".py").exists() or (p / "__init__.py").exists())


def _imports(path: pathlib.Path) -> set[str]:
    """Modules of the package that ``path`` imports (``from . import x`` of a submodule
    names the submodule: the package's own ``__init__`` always runs first)."""
    name = _module_name(path)
    here = [] if name == "__init__" else name.split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.split(".")[0] == "focal_array":
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                if _exists([*target, alias.name]):
                    found.add(".".join([*target, alias.name]))
                else:
                    found.add(".".join(target) or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("focal_array."):
                    found.add(alias.name.split(".", 1)[1])
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        if "data" in path.relative_to(PACKAGE).parts:
            continue
        graph[_module_name(path)] = _imports(path)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_is_read():
    graph = _graph()
    assert "losses" in graph["gradients"]
    assert "_loss_reductions" in graph["losses"]
    assert "_executors" in graph["_loss_reductions"]
    assert "_formulas" in graph["_executors._jax"]
    # a lazy import inside a function counts too
    assert {"_executors._numpy", "_executors._jax", "_executors._torch"} <= graph["_executors"]
    assert {"losses", "matcher", "detection"} <= graph["__init__"]


def test_keras_module_sits_on_the_losses_and_is_not_imported_eagerly():
    graph = _graph()
    assert graph["keras"] <= {"losses", "_loss_checks", "_validate"}, graph["keras"]
    assert "keras" not in graph["__init__"]


def test_torch_module_sits_on_the_losses_and_is_not_imported_eagerly():
    graph = _graph()
    assert graph["torch"] <= {"losses", "_loss_checks", "_validate", "_typing"}, graph["torch"]
    assert "torch" not in graph["__init__"]


def test_no_import_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_cycle_detector_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _layer(name: str) -> int:
    top = name.split(".")[0]
    for i, layer in enumerate(LAYERS):
        if top in layer or name in layer:
            return i
    raise AssertionError(f"module {name} is in no layer of this test: add it to LAYERS")


def test_imports_only_go_down_the_layers():
    for module, targets in _graph().items():
        for t in targets:
            if t.split(".")[0] == module.split(".")[0]:
                continue  # inside one package (e.g. _executors._jax -> _executors._blocked)
            assert _layer(t) <= _layer(module), f"{module} imports {t}, a higher layer"
