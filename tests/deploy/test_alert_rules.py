"""The alert rules: valid for promtool, unit-tested, documented, built on real metrics."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.deploy.support import (
    ALERTS_FILE,
    ALERTS_TEST_FILE,
    OPERATIONS_DOC,
    PROMETHEUS_CONFIG,
    ROOT,
    alert_rules,
    engine_series,
    load_yaml,
    promtool_binary,
    unknown_metric_problems,
)

PROMTOOL_TIMEOUT_S = 120
SEVERITIES = {"critical", "warning"}
# Every kind of alert the operations issue asks for, by the metric it watches.
REQUIRED_COVERAGE = {
    "consumer lag": "sakk_consumer_lag_messages",
    "no progress": "sakk_consumer_last_progress_timestamp_seconds",
    "dead letters": "sakk_dead_letters_total",
    "rejections or failures": "sakk_payment_outcomes_total",
    "end-to-end latency": "sakk_end_to_end_seconds_bucket",
    "consumer readiness": "sakk_consumer_ready",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool_binary(), *args],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
        cwd=ROOT,
    )


def markdown_anchors(text: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown document."""
    anchors = set()
    for line in text.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            title = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def unit_tests() -> list[dict[str, Any]]:
    return load_yaml(ALERTS_TEST_FILE)["tests"]


# --------------------------------------------------------------------------- promtool


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_prometheus_config_passes_promtool_check() -> None:
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass_promtool() -> None:
    result = promtool("test", "rules", str(ALERTS_TEST_FILE))
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- the rules


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), names


def test_every_alert_is_covered_by_a_firing_and_a_silent_unit_test() -> None:
    fires, silent = set(), set()
    for test in unit_tests():
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert not names - fires, f"never shown to fire: {sorted(names - fires)}"
    assert not names - silent, f"never shown to stay silent: {sorted(names - silent)}"
    unknown = (fires | silent) - names
    assert not unknown, f"tests of unknown alerts: {sorted(unknown)}"


def test_unit_tests_load_the_deployed_rule_file() -> None:
    assert load_yaml(ALERTS_TEST_FILE)["rule_files"] == [ALERTS_FILE.name]
    assert ALERTS_FILE.name in load_yaml(PROMETHEUS_CONFIG)["rule_files"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_severity_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("Sakk")
    assert rule.get("labels", {}).get("severity") in SEVERITIES
    annotations = rule.get("annotations", {})
    assert annotations.get("summary") and annotations.get("description")
    assert annotations.get("runbook") == f"docs/operations.md#{rule['alert'].lower()}"


def test_every_runbook_link_lands_on_a_section_of_the_operations_guide() -> None:
    anchors = markdown_anchors(OPERATIONS_DOC.read_text(encoding="utf-8"))
    missing = [
        rule["alert"]
        for rule in alert_rules()
        if rule["annotations"]["runbook"].split("#", 1)[1] not in anchors
    ]
    assert not missing, f"docs/operations.md has no section for {missing}"


def test_the_operations_guides_alert_table_lists_every_alert_with_its_severity() -> None:
    rows = re.findall(
        r"^\| \[(Sakk\w+)\]\(#(\w+)\) \| (\w+) \|", OPERATIONS_DOC.read_text(encoding="utf-8"), re.M
    )
    listed = {name: (anchor, severity) for name, anchor, severity in rows}
    expected = {r["alert"]: (r["alert"].lower(), r["labels"]["severity"]) for r in alert_rules()}
    assert listed == expected


def test_alerts_use_only_metrics_and_labels_the_engine_exposes() -> None:
    series = engine_series()
    problems = []
    for rule in alert_rules():
        problems += unknown_metric_problems(f"alert {rule['alert']}", rule["expr"], series)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("subject", sorted(REQUIRED_COVERAGE))
def test_alerts_cover(subject: str) -> None:
    metric = REQUIRED_COVERAGE[subject]
    assert any(metric in rule["expr"] for rule in alert_rules()), f"no alert watches {metric}"


def test_an_alert_fires_when_a_consumer_process_is_down() -> None:
    assert any(
        re.fullmatch(r'up\{job="sakk"\}\s*==\s*0', rule["expr"].strip()) for rule in alert_rules()
    )
