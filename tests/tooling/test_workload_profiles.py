"""The workload's profiles are data every use reads, and its modules import one way."""

from __future__ import annotations

import ast
from pathlib import Path

import tooling.workload
from tooling.workload.profiles import (
    CHAOS,
    CHAOS_WORKLOAD,
    DEMO,
    MIXES,
    PROFILES,
    SIMULATE,
    TRAFFIC,
    Profile,
)

PACKAGE = Path(tooling.workload.__file__).parent


def test_every_profile_names_a_generator_and_a_mix_it_has():
    assert set(PROFILES) == {"demo", "simulate", "bench", "bench-skew", "chaos"}
    for profile in PROFILES.values():
        assert profile.generator in (TRAFFIC, CHAOS_WORKLOAD), profile
        assert profile.mix in MIXES, profile
        assert 0 <= profile.lifecycle_percent <= 100
    assert PROFILES["bench-skew"].mix == "skew"
    assert DEMO.lifecycle and not PROFILES["bench"].lifecycle
    assert CHAOS.generator == CHAOS_WORKLOAD and CHAOS.lifecycle_percent > 0


def test_profiles_are_frozen_data():
    assert Profile.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_sakk_simulate_defaults_are_the_simulate_profile():
    from sakk.cli.simulate import simulate as command

    defaults = {p.name: p.default for p in command.params}
    assert (defaults["profile"], defaults["lifecycle"]) == (SIMULATE.mix, SIMULATE.lifecycle)


def _workload_imports(path: Path) -> set[str]:
    """The tooling.workload modules ``path`` imports (at any level, TYPE_CHECKING too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tooling.workload"):
            found.add(node.module.removeprefix("tooling.workload.") or "__init__")
        elif isinstance(node, ast.Import):
            found |= {
                a.name.removeprefix("tooling.workload.")
                for a in node.names
                if a.name.startswith("tooling.workload.")
            }
    return found


def test_the_workload_modules_import_each_other_one_way_only():
    graph = {p.stem: _workload_imports(p) for p in PACKAGE.glob("*.py")}
    assert "flows" in graph["chaos"]  # the graph is read
    assert "chaos" not in graph["flows"]  # the flows get a minter, not the builder

    def reaches(start: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out: set[str] = set()
        for nxt in graph.get(start, set()) - seen:
            out |= {nxt} | reaches(nxt, seen | {start})
        return out

    cycles = [m for m in graph if m in reaches(m)]
    assert cycles == [], graph
