"""Imports point down only, and functions stay short: read from the source, not by convention.

The layers, top to bottom: ``sakk`` (the command line and the wiring) and ``tooling``
(demo, bench, chaos); ``consumers`` (the stages) and ``producers`` (the bank's side),
which never import each other; ``engine``, which imports none of them. Every import
counts, a lazy one inside a function or one under ``TYPE_CHECKING`` included.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# package -> the packages it must never import
FORBIDDEN: dict[str, frozenset[str]] = {
    "engine": frozenset({"consumers", "producers", "tooling", "sakk"}),
    "consumers": frozenset({"producers", "tooling", "sakk"}),
    "producers": frozenset({"consumers", "tooling", "sakk"}),
}
SHORT_PACKAGES = ("engine", "consumers", "producers", "sakk")
MAX_FUNCTION_LINES = 60
# Schema history is written once and never edited: its upgrades are as long as they were.
NOT_MEASURED = ("engine/ledger/migrations/",)
# Functions over MAX_FUNCTION_LINES today, to be split: this list may only shrink.
ALLOWED_LONG = frozenset({})

# Modules that import each other today (the list may only shrink): the chaos lifecycle
# flows take the workload's types (one workload for every tool removes the pair); the
# schema policy judges what serialization decodes, lazily imported back by it.
ALLOWED_CYCLES = frozenset(
    {
        frozenset({"engine.serialization", "engine.schema_policy"}),
    }
)


def modules(package: str) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """(line, module) of every import in ``tree``, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def layering_violations(package: str, forbidden: frozenset[str]) -> list[str]:
    return [
        f"{path}:{line} imports {name} ({package} must not import {name.split('.')[0]})"
        for path, tree in modules(package)
        for line, name in imported(tree)
        if name.split(".")[0] in forbidden
    ]


def test_imports_point_down_only() -> None:
    found = [v for pkg, banned in FORBIDDEN.items() for v in layering_violations(pkg, banned)]

    assert not found, "\n".join(found)


def mutual_imports() -> set[frozenset[str]]:
    """Pairs of modules that import each other (a cycle of two), anywhere in the code."""
    uses: dict[str, set[str]] = {}
    for package in (*FORBIDDEN, "sakk", "tooling"):
        for path, tree in modules(package):
            module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            uses[module] = {name for _, name in imported(tree)}
    return {frozenset({a, b}) for a, names in uses.items() for b in names if a in uses.get(b, ())}


def test_no_two_modules_import_each_other_but_the_listed_ones() -> None:
    cycles = mutual_imports()

    assert not cycles - ALLOWED_CYCLES, f"modules importing each other: {cycles - ALLOWED_CYCLES}"
    assert not ALLOWED_CYCLES - cycles, (
        f"gone, remove from ALLOWED_CYCLES: {ALLOWED_CYCLES - cycles}"
    )


def function_lengths(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines from ``def`` to its last line) of every function in ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            yield name, (node.end_lineno or node.lineno) - node.lineno + 1
            yield from function_lengths(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from function_lengths(node, f"{prefix}{node.name}.")
        else:
            yield from function_lengths(node, prefix)


def long_functions() -> dict[str, int]:
    return {
        f"{path}::{name}": lines
        for package in SHORT_PACKAGES
        for path, tree in modules(package)
        if not path.startswith(NOT_MEASURED)
        for name, lines in function_lengths(tree)
        if lines > MAX_FUNCTION_LINES
    }


def test_no_function_is_longer_than_sixty_lines_but_the_listed_ones() -> None:
    too_long = {f: n for f, n in long_functions().items() if f not in ALLOWED_LONG}

    assert not too_long, f"over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_the_list_of_long_functions_only_shrinks() -> None:
    """A function split below the bound leaves the list, so it cannot grow back unseen."""
    stale = ALLOWED_LONG - set(long_functions())

    assert not stale, (
        f"no longer over {MAX_FUNCTION_LINES} lines, remove from ALLOWED_LONG: {stale}"
    )


def test_the_checks_see_a_forbidden_import_and_a_long_function() -> None:
    tree = ast.parse(
        "def f():\n    from consumers.validator import Validator\n" + "    x = 1\n" * 60
    )

    assert [m for _, m in imported(tree)] == ["consumers.validator"]
    assert dict(function_lengths(tree)) == {"f": 62}
