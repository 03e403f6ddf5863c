"""The chaos report: figures by kind, and always ``violations: N`` as the last line."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

from tooling.chaos.invariants import Checked
from tooling.chaos.latency import LatencySplit
from tooling.chaos.report import MAX_VIOLATIONS_SHOWN, ChaosReport


def test_clean_report_ends_with_zero_violations():
    report = ChaosReport(
        7,
        "sqlite",
        300,
        poison=Counter({"random_bytes": 2}),
        bank_retries=40,
        faults=Counter({"kill": 9, "broker_freeze": 1}),
        stalls_s={"broker_freeze": 6.5},
        drain_s=4.2,
        start="2026-11-26T09:00:00+0000",
    )
    text = report.render()
    assert text.splitlines()[-1] == "violations: 0"
    assert "kill                         9" in text
    assert "6.5 s in total" in text
    assert "--seed 7 --start 2026-11-26T09:00:00+0000" in text
    assert report.ok


def test_violations_are_listed_and_counted():
    report = ChaosReport(1, "postgresql", 10, violations=[f"v{i}" for i in range(100)])
    lines = report.render().splitlines()
    assert lines[-1] == "violations: 100"
    assert sum(line.startswith("VIOLATION ") for line in lines) == MAX_VIOLATIONS_SHOWN
    assert "did not drain" in report.render()
    assert not report.ok


def test_both_p99s_are_printed_and_in_the_json():
    checked = Checked(
        latency=LatencySplit("190", 400, 1.25, 3.5, 420, 6.0, 50, 21.75),
        notifications=Counter({"DELIVERED": 470}),
    )
    report = ChaosReport(
        3,
        "sqlite",
        300,
        faults=Counter({"bank_outage": 1, "webhook_failure": 10}),
        webhook_modes=Counter({"ok": 500, "down": 80, "timeout": 10}),
        down_bank="190",
        down_planned_s=21.0,
        down_s=24.5,
        down_from=datetime(2026, 11, 26, 9, 0, 3, tzinfo=UTC),
        down_until=datetime(2026, 11, 26, 9, 0, 27, 500_000, tzinfo=UTC),
        checked=checked,
        drain_s=3.0,
    )
    text = report.render()
    assert "bank 190, 24.5 s (planned 21.0 s), 80 requests held unanswered" in text
    assert "created while bank 190 was down" in text
    assert "1.25 s  over 400 no stage-wide fault caught in flight" in text
    assert "bank 190 (down 24.5 s)" in text and "21.75 s  over 50" in text
    assert "timeout 10" in text and "down 80" not in text  # the outage is not a random failure
    document = json.loads(json.dumps(report.to_dict()))
    latency = document["delivery_latency"]
    assert latency["healthy"] == {"notifications": 400, "p99_s": 1.25, "max_s": 3.5}
    assert latency["healthy_all"] == {"notifications": 420, "p99_s": 6.0}
    assert latency["down"] == {"bank": "190", "notifications": 50, "p99_s": 21.75}
    assert document["bank_outage"]["requests_held"] == 80
    assert document["bank_outage"]["until"] == "2026-11-26T09:00:27.500000+00:00"
    assert document["ok"] is True and document["violations"] == []
