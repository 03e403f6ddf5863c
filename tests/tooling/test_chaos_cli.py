"""``sakk chaos``: prints the report and exits non-zero when any invariant was violated."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import sakk.cli.chaos as chaos_cli
from sakk.cli import cli
from tooling.chaos.harness import ChaosConfig
from tooling.chaos.report import ChaosReport


@pytest.mark.parametrize(("violations", "code"), [([], 0), (["payment lost: p-1"], 1)])
def test_exit_code_follows_the_violations(monkeypatch, violations, code):
    seen: list[ChaosConfig] = []

    def fake_run(config, _settings, _progress):
        seen.append(config)
        return ChaosReport(
            config.seed, "sqlite", config.payments, violations=violations, drain_s=1.0
        )

    monkeypatch.setattr(chaos_cli, "run_chaos", fake_run)
    result = CliRunner().invoke(
        cli, ["chaos", "--seed", "9", "--payments", "40", "--duration-s", "12", "--quiet"]
    )
    assert result.exit_code == code, result.output
    assert result.output.splitlines()[-1] == f"violations: {len(violations)}"
    assert (seen[0].seed, seen[0].payments, seen[0].duration_s) == (9, 40, 12.0)


def test_a_bad_database_url_is_a_usage_error(monkeypatch):
    result = CliRunner().invoke(
        cli, ["chaos", "--database-url", "mysql://x/y", "--duration-s", "0"]
    )
    assert result.exit_code != 0
    assert "duration_s" in result.output
