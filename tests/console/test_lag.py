"""The overview's consumer lag, asked of the embedded broker: each stage's input topics,
the messages its group has not committed; it falls to zero as the stage consumes, and a
silent broker makes it "unknown" within the console's bound, never a hung page."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from engine.kafka.embedded import free_port
from engine.kafka.lag import group_lags
from sakk.app import run_consumers
from sakk.console.app import create_app
from tests.console.conftest import Console

pytestmark = pytest.mark.integration
UNCONSUMED = 5


def overview_lag(console: Console, settings, user: str, **config) -> list[dict]:
    app = create_app(console.config(**config), console.engine, settings=settings)
    client = TestClient(app, headers={"Authorization": f"Bearer {console.tokens[user]}"})
    response = client.get("/api/v1/overview")
    assert response.status_code == 200, response.text
    return list(response.json()["lag"])


def test_each_stages_lag_counts_what_it_has_not_consumed_then_falls_to_zero(
    console: Console, flow_factory, sqlite_url
):
    flow = flow_factory(sqlite_url, consumers=())  # topics and a ledger; no stage runs yet
    s = flow.settings
    for i in range(UNCONSUMED):  # one record a batch (see engine.kafka.lag on Tansu's ends)
        flow.publish_encoded([f"not avro {i}".encode()])
    lags = {x["stage"]: x for x in overview_lag(console, s, "op1")}
    assert list(lags) == ["validator", "settlement", "notification"]
    validator = lags["validator"]
    assert validator["group"] == s.group("validator") and validator["unknown"] is None
    assert validator["topics"][s.topic("initiated")] == UNCONSUMED
    assert validator["lag"] == UNCONSUMED
    assert lags["settlement"]["lag"] == 0 and s.topic("validated") in lags["settlement"]["topics"]
    assert overview_lag(console, s, "b007") == []  # the switch's traffic is not a bank's
    app = create_app(console.config(), console.engine, settings=s)
    screen = TestClient(app, headers={"Authorization": f"Bearer {console.tokens['op1']}"})
    assert f'data-testid="lag-validator">{UNCONSUMED}<' in screen.get("/").text
    flow.threads = run_consumers(s, ("validator",), flow.stop_event)
    groups = {s.group("validator"): [s.topic("initiated")]}
    flow.wait_until(lambda: group_lags(s, groups, 5.0)[s.group("validator")].total == 0)
    after = {x["stage"]: x for x in overview_lag(console, s, "aud")}
    assert after["validator"]["lag"] == 0


def test_without_a_broker_or_with_a_silent_one_the_lag_is_unknown_and_says_why(
    console: Console, settings_factory, sqlite_url
):
    none = overview_lag(console, None, "op1")
    assert {x["unknown"] for x in none} == {
        "no broker configured (set SAKK_KAFKA_BOOTSTRAP_SERVERS)"
    }  # fmt: skip
    silent = settings_factory(f"127.0.0.1:{free_port()}", sqlite_url)
    started = time.monotonic()
    lags = overview_lag(console, silent, "op1", lag_timeout_ms=1_000)
    took = time.monotonic() - started
    assert all(x["lag"] is None and x["topics"] is None and x["unknown"] for x in lags)
    assert took < 10, f"the overview took {took:.1f} s with a bound of 1 s"
