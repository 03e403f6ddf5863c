"""The chaos report: figures by kind, and always ``violations: N`` as the last line."""

from __future__ import annotations

from collections import Counter

from engine.chaos.report import MAX_VIOLATIONS_SHOWN, ChaosReport


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
