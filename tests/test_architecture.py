"""The shape of the code, checked: layers only import downwards, functions stay small.

The layers, from the bottom (docs/architecture.md walks through them): the corruption engine
(``corruptions``, which never imports robustmsa); shared leaves (version, errors, metrics, robustness);
data; raw media; models; the dataset registry; the suite schema; the plan; corruption context and
evaluation; training and reference predictors; tracking; reports; the trial; the runner; the Python
API (``robustmsa.api`` and the package's ``__init__``, which re-exports it lazily); the CLI.
A module may import its own layer and the layers below it, never one above (lazy imports inside
functions included).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS: list[tuple[str, ...]] = [
    ("corruptions",),
    ("robustmsa._version", "robustmsa.errors", "robustmsa.metrics", "robustmsa.robustness", "robustmsa.published"),
    ("robustmsa.data",),
    ("robustmsa.media",),
    ("robustmsa.models",),
    ("robustmsa.datasets",),
    ("robustmsa.suite",),
    ("robustmsa.plan",),
    ("robustmsa.corruption_context", "robustmsa.evaluation"),
    ("robustmsa.training", "robustmsa.references", "robustmsa.export"),
    ("robustmsa.tracking",),
    ("robustmsa.reports",),
    ("robustmsa.trial", "robustmsa.estimate"),
    ("robustmsa.runner", "robustmsa.progress"),
    ("robustmsa.api", "robustmsa"),  # ``robustmsa`` itself: the package's __init__, which re-exports the API
    ("robustmsa.cli", "robustmsa.__main__"),
]

MAX_LINES, MAX_PARAMS = 60, 8


def layer_of(module: str) -> int:
    """The layer of ``module``: the deepest listed prefix wins (``robustmsa.data.batch`` -> data)."""
    best, depth = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            exact = p == "robustmsa"  # the package's own __init__ only, not everything under it
            if (module == p or (not exact and module.startswith(p + "."))) and p.count(".") > depth:
                best, depth = i, p.count(".")
    if best < 0:
        raise AssertionError(f"module {module} has no layer: add it to LAYERS (and docs/architecture.md)")
    return best


def modules() -> list[tuple[str, Path]]:
    out = []
    for root in ("corruptions", "robustmsa"):
        for path in sorted((ROOT / root).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.append((".".join(parts), path))
    return out


def imports_of(module: str, path: Path) -> set[str]:
    """Every corruptions/robustmsa module that ``module`` imports, at any depth of the file."""
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            if not node.module:  # ``from . import api``: the submodules named
                found.update(f"{name}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {n for n in found if n.split(".")[0] in ("corruptions", "robustmsa")}


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_no_module_imports_a_higher_layer(module: str, path: Path) -> None:
    own = layer_of(module)
    upward = sorted(m for m in imports_of(module, path) if layer_of(m) > own)
    assert not upward, f"{module} (layer {own}) imports higher layers: {upward}"


def test_the_corruption_engine_never_imports_robustmsa() -> None:
    offenders = {m: sorted(i for i in imports_of(m, p) if i.startswith("robustmsa"))
                 for m, p in modules() if m.startswith("corruptions")}
    assert not {m: v for m, v in offenders.items() if v}


def test_the_layer_rule_would_catch_an_upward_import() -> None:
    """The check itself can fail: evaluation importing the runner is reported."""
    assert layer_of("robustmsa.runner") > layer_of("robustmsa.evaluation")
    assert layer_of("robustmsa.data.batch") == layer_of("robustmsa.data") < layer_of("robustmsa.models.base")
    with pytest.raises(AssertionError, match="has no layer"):
        layer_of("robustmsa.somewhere_new")


def _functions() -> list[tuple[str, int, int]]:
    out = []
    for root in ("corruptions", "robustmsa", "bench"):
        for path in sorted((ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = node.args
                    params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
                    n = len(params) + bool(a.vararg) + bool(a.kwarg) - (bool(params) and params[0].arg in ("self", "cls"))
                    where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                    out.append((where, node.end_lineno - node.lineno + 1, n))
    return out


def test_no_function_is_long_or_takes_many_parameters() -> None:
    functions = _functions()
    assert len(functions) > 500  # the walk found the code
    big = [f"{w} ({n} lines, {p} parameters)" for w, n, p in functions if n > MAX_LINES or p > MAX_PARAMS]
    assert not big, "split these (or group their parameters in a spec object):\n" + "\n".join(big)
