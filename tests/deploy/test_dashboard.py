"""The Grafana dashboard and its provisioning: valid, complete, built on real metrics."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from tests.deploy.support import (
    DATASOURCES_FILE,
    as_plain_promql,
    dashboard,
    dashboard_exprs,
    dashboard_panels,
    engine_series,
    load_yaml,
    promtool_binary,
    unknown_metric_problems,
)

PROMTOOL_TIMEOUT_S = 120


def grouped_by(expr: str) -> set[str]:
    labels: set[str] = set()
    for grouping in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        labels |= {label.strip() for label in grouping.split(",") if label.strip()}
    return labels


def test_dashboard_is_identified_and_its_panel_ids_unique() -> None:
    board = dashboard()
    assert board["uid"] == "sakk-overview" and board["title"]
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids)), ids


def test_every_query_uses_the_provisioned_datasource() -> None:
    (datasource,) = load_yaml(DATASOURCES_FILE)["datasources"]
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    problems = []
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        if panel.get("datasource") != expected:
            problems.append(f"panel {panel['title']!r}: datasource {panel.get('datasource')}")
        if not panel.get("targets"):
            problems.append(f"panel {panel['title']!r} has no query")
        for target in panel.get("targets", []):
            if target.get("datasource", expected) != expected:
                problems.append(f"panel {panel['title']!r} {target['refId']}: other datasource")
    for variable in dashboard()["templating"]["list"]:
        if variable.get("datasource") != expected:
            problems.append(f"variable {variable['name']!r}: other datasource")
    assert not problems, "\n".join(problems)


def test_dashboard_uses_only_metrics_and_labels_the_engine_exposes() -> None:
    series = engine_series()
    problems = []
    for where, expr in dashboard_exprs():
        problems += unknown_metric_problems(where, expr, series)
    assert not problems, "\n".join(problems)


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query, as a recording rule, once Grafana's macros are filled in."""
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": as_plain_promql(expr)}
        for i, (_, expr) in enumerate(dashboard_exprs())
        if not expr.startswith("label_values(")
    ]
    rule_file = tmp_path / "dashboard_queries.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool_binary(), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_shows_what_operators_asked_for() -> None:
    exprs = [expr for _, expr in dashboard_exprs()]

    def shows(metric: str, *labels: str) -> bool:
        return any(metric in e and set(labels) <= grouped_by(e) for e in exprs)

    wanted = {
        "throughput by stage": shows("sakk_messages_total", "consumer"),
        "throughput by channel": shows("sakk_payment_outcomes_total", "consumer", "channel"),
        "outcomes by reason": shows("sakk_payment_outcomes_total", "outcome", "reason"),
        "consumer lag": shows("sakk_consumer_lag_messages", "consumer"),
        "dead letters": shows("sakk_dead_letters_total", "consumer", "kind"),
        "per-bank net position": shows("sakk_bank_net_position_minor", "bank"),
    }
    for quantile in ("0.5", "0.95", "0.99"):
        wanted[f"end-to-end p{quantile}"] = any(
            f"histogram_quantile({quantile}," in e and "sakk_end_to_end_seconds_bucket" in e
            for e in exprs
        )
    missing = [subject for subject, present in wanted.items() if not present]
    assert not missing, f"the dashboard does not show {missing}"
