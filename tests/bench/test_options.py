"""Which parts ``sakk bench`` runs, and the options it refuses before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sakk.cli import cli
from sakk.cli.bench import _plans, _uniform_rates
from tooling.bench.flow import SessionPlan


def invoke(tmp_path: Path, *args: str, partitions: int = 6) -> tuple[int, str]:
    env = {"SAKK_DATA_DIR": str(tmp_path), "SAKK_TOPIC_PARTITIONS": str(partitions)}
    result = CliRunner().invoke(cli, ["bench", *args], env=env)
    return result.exit_code, result.output


def test_by_default_every_part_runs() -> None:
    rates = _uniform_rates("250,500,1000,2000", skip_curve=False, skew_rate=1_000)
    plans = _plans(40_000, rates, 10, skip_skew=False, skew_rate=1_000, scale_out_instances=2)
    assert set(plans) == {"uniform", "skew", "scale_out"}
    assert plans["uniform"] == SessionPlan(
        throughput_payments=40_000,
        rates_per_s=(250, 500, 1_000, 2_000),
        rate_seconds=10,
        verify_chain=True,
    )
    assert (plans["skew"].profile, plans["skew"].rates_per_s) == ("skew", (1_000,))
    assert plans["skew"].throughput_payments == 40_000  # the same count as the uniform run
    scaled = plans["scale_out"]
    assert (scaled.instances, scaled.throughput_payments, scaled.rates_per_s) == (2, 40_000, ())
    assert all(plan.verify_chain for plan in plans.values())


def test_the_uniform_curve_gets_the_skew_rate_so_the_two_p99s_compare() -> None:
    assert _uniform_rates("250,500", skip_curve=False, skew_rate=1_000) == [250, 500, 1_000]
    assert _uniform_rates("500,250,500", skip_curve=False, skew_rate=None) == [500, 250]
    assert _uniform_rates("250", skip_curve=True, skew_rate=1_000) == [1_000]
    assert _uniform_rates("250", skip_curve=True, skew_rate=None) == []


def test_only_the_uniform_curve_searches_the_knee() -> None:
    plans = _plans(1_000, [250, 500], 5, skip_skew=False, skew_rate=500, scale_out_instances=2,
                   knee_steps=3)  # fmt: skip
    assert plans["uniform"].knee_steps == 3
    assert plans["skew"].knee_steps == 0 and plans["scale_out"].knee_steps == 0
    assert _plans(1_000, [], 5, True, 500, 0, knee_steps=3)["uniform"].knee_steps == 0


def test_skipped_parts_have_no_session() -> None:
    plans = _plans(1_000, [], 5, skip_skew=True, skew_rate=1_000, scale_out_instances=0)
    assert set(plans) == {"uniform"}
    assert plans["uniform"].rates_per_s == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--curve-rates", "fast"), "payments/s as integers"),
        (("--curve-rates", "0,250"), "--curve-rates"),
        (("--payments", "0"), "--payments"),
        (("--backends", "oracle"), "unknown backends"),
        (("--scale-out-instances", "1"), "--scale-out-instances"),
        (("--knee-steps", "9"), "--knee-steps"),
        (("--null-messages", "0"), "--null-messages"),
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    code, output = invoke(tmp_path, *args)
    assert code == 2 and message in output, output
    assert not (tmp_path / "bench").exists()


def test_more_scale_out_instances_than_partitions_is_refused(tmp_path: Path) -> None:
    code, output = invoke(tmp_path, "--scale-out-instances", "3", partitions=2)
    assert code == 2 and "partitions" in output, output
