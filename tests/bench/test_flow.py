"""A session's plan is bounded before any process starts; stages' CPU adds up over instances."""

from __future__ import annotations

from typing import Any

import pytest

from tooling.bench.flow import MAX_INSTANCES, FlowResult, ProcessUsage, SessionPlan
from tooling.bench.knee import MAX_KNEE_STEPS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "throughput, latency, or both"),
        ({"throughput_payments": -1}, "throughput_payments"),
        ({"throughput_payments": 10, "instances": 0}, "instances"),
        ({"throughput_payments": 10, "instances": MAX_INSTANCES + 1}, "instances"),
        ({"rates_per_s": (0,)}, "rates"),
        ({"rates_per_s": (100,), "rate_seconds": 0}, "rate_seconds"),
        ({"rates_per_s": (100_000,), "rate_seconds": 3_600}, "payments in one session"),
        ({"rates_per_s": (100,), "knee_steps": MAX_KNEE_STEPS + 1}, "knee_steps"),
        ({"rates_per_s": (1_000,), "rate_seconds": 300, "knee_steps": 8}, "in one session"),
    ],
)
def test_plan_refuses_what_no_session_could_run(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SessionPlan(**fields)


def test_latency_only_and_throughput_only_plans_are_sessions() -> None:
    assert SessionPlan(rates_per_s=(250, 500)).throughput_payments == 0
    assert SessionPlan(throughput_payments=100, instances=2).rates_per_s == ()


def test_cpu_by_stage_adds_up_its_instances() -> None:
    processes = [ProcessUsage("validator-1", 0, 1.5), ProcessUsage("validator-2", 0, 2.0),
                 ProcessUsage("settlement-1", 0, 3.0)]  # fmt: skip
    result = FlowResult("postgresql", 1_000, 2.0, processes, instances=2)
    assert result.cpu_s_by_stage() == {"validator": 3.5, "settlement": 3.0}
    assert result.payments_per_s == 500.0
