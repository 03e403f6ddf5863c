"""Helpers of the deployment tests (the fixtures are registered in conftest.py).

The deploy files (compose, Prometheus, Grafana) may only name metrics and labels that
``engine/metrics.py`` defines; the helpers here read both sides. ``prometheus_factory``
starts the real Prometheus server (Debian's ``prometheus`` package) on loopback.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERTS_FILE = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST_FILE = PROMETHEUS_DIR / "alerts_test.yml"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "sakk.json"
DATASOURCES_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "sakk.yml"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

CONSUMERS = ("validator", "settlement", "notification")
SCRAPE_JOB = "sakk"
# Labels Prometheus adds to every scraped series (target labels), beside the engine's own.
TARGET_LABELS = frozenset({"job", "instance", "service"})

METRIC_NAME = re.compile(r"\bsakk_[a-z0-9_]+\b")
SELECTOR = re.compile(r"\b(sakk_[a-z0-9_]+)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|on|without|ignoring)\s*\(([^)]*)\)")

PROMETHEUS_START_TIMEOUT_S = 30.0
PROMETHEUS_STOP_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# --------------------------------------------------------------------------- engine metrics


@dataclass(frozen=True)
class MetricSeries:
    """A series name the engine exposes, with the labels it carries."""

    name: str
    family: str
    labels: frozenset[str]


def engine_series() -> dict[str, MetricSeries]:
    """Every series name ``engine.metrics`` exposes on /metrics, by name.

    Counters appear as ``<family>_total``, histograms as ``_bucket`` (with ``le``),
    ``_sum`` and ``_count``; ``_created`` samples are left out on purpose (they can be
    switched off by the client library).
    """
    from prometheus_client.metrics import MetricWrapperBase

    from engine import metrics

    suffixes = {
        "counter": {"_total": ()},
        "gauge": {"": ()},
        "histogram": {"_bucket": ("le",), "_sum": (), "_count": ()},
        "summary": {"": ("quantile",), "_sum": (), "_count": ()},
    }
    series: dict[str, MetricSeries] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        labelnames = frozenset(obj._labelnames)  # noqa: SLF001 - no public accessor
        for family in obj.describe():
            for suffix, extra in suffixes[family.type].items():
                name = family.name + suffix
                series[name] = MetricSeries(name, family.name, labelnames | frozenset(extra))
    return series


def metric_names_in(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def unknown_metric_problems(where: str, expr: str, series: dict[str, MetricSeries]) -> list[str]:
    """What in ``expr`` names a metric or label the engine does not expose."""
    problems = []
    names = metric_names_in(expr)
    for name in sorted(names - series.keys()):
        problems.append(f"{where}: {name} is not a series engine/metrics.py exposes")
    for name, matchers in SELECTOR.findall(expr):
        if name not in series:
            continue
        for label in MATCHER_LABEL.findall(matchers):
            if label not in series[name].labels | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
    known_labels = set(TARGET_LABELS)
    for name in names & series.keys():
        known_labels |= series[name].labels
    for grouping in GROUPING.findall(expr):
        for label in (part.strip() for part in grouping.split(",")):
            if label and label not in known_labels:
                problems.append(f"{where}: groups by {label!r}, a label none of its metrics has")
    return problems


# --------------------------------------------------------------------------- deploy files


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in load_yaml(ALERTS_FILE)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every templating query."""
    found = []
    for panel in dashboard_panels():
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for variable in dashboard().get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if query:
            found.append((f"variable {variable['name']!r}", query))
    return found


GRAFANA_SUBSTITUTIONS = {
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$__range": "5m",
    "$consumer": ".*",
    "$channel": ".*",
}


def as_plain_promql(expr: str, substitutions: dict[str, str] | None = None) -> str:
    """Replace Grafana's macros and variables so Prometheus can evaluate the query."""
    for macro, value in sorted(
        (substitutions or GRAFANA_SUBSTITUTIONS).items(), key=lambda item: -len(item[0])
    ):
        expr = expr.replace(macro, value)
    return expr


# --------------------------------------------------------------------------- Prometheus


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip(
            "the Prometheus server is not installed (Debian package `prometheus`, "
            "which `make test` installs through .ci/test-deps)"
        )
    return path


def promtool_binary() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not installed (Debian package `prometheus`, "
            "which `make test` installs through .ci/test-deps)"
        )
    return path


class PrometheusError(RuntimeError):
    """The Prometheus server did not start, or its HTTP API answered with an error."""


@dataclass
class PrometheusServer:
    """A Prometheus server process and a small client of its HTTP API."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=HTTP_TIMEOUT_S) as r:
                body = json.load(r)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise PrometheusError(
                f"GET {path} {params}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return self.get("/api/v1/query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict]:
        return self.get(
            "/api/v1/query_range",
            query=expr,
            start=f"{start:.3f}",
            end=f"{end:.3f}",
            step=f"{step_s}s",
        )["result"]

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr``, None when it has no result."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) != 1:
            raise PrometheusError(f"{expr!r} returned {len(result)} series, expected one")
        return float(result[0]["value"][1])

    def wait_for(
        self,
        what: str,
        check: Callable[[], bool],
        timeout_s: float,
        diagnose: Callable[[], str] = lambda: "",
    ) -> None:
        """Poll ``check`` every 0.5 s until it holds; fail naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            if check():
                return
            if self.process.poll() is not None:
                pytest.fail(f"Prometheus exited while waiting for {what}:\n{tail(self.log_path)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout_s:.0f}s\n{diagnose()}")
            time.sleep(0.5)


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return f"--- last lines of {path}:\n" + "\n".join(text[-lines:])


def free_port() -> int:
    from engine.kafka.embedded import free_port as engine_free_port

    return engine_free_port()


@dataclass
class _Started:
    servers: list[PrometheusServer] = field(default_factory=list)


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start Prometheus servers on loopback scraping the given targets; stopped at teardown.

    ``start(targets, rule_files=(), scrape_interval_s=1)`` writes a config whose single
    scrape job is named like the deployment's (``sakk``), so the alert rules apply.
    """
    binary = prometheus_binary()
    started = _Started()

    def start(
        targets: Sequence[str], rule_files: Sequence[Path] = (), scrape_interval_s: int = 1
    ) -> PrometheusServer:
        home = tmp_path / f"prometheus-{len(started.servers)}"
        (home / "data").mkdir(parents=True)
        config = {
            "global": {
                "scrape_interval": f"{scrape_interval_s}s",
                "scrape_timeout": f"{scrape_interval_s}s",
                "evaluation_interval": f"{scrape_interval_s}s",
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": SCRAPE_JOB, "static_configs": [{"targets": list(targets)}]}
            ],
        }
        config_path = home / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        port = free_port()
        log_path = home / "prometheus.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--storage.tsdb.path={home / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        server = PrometheusServer(f"http://127.0.0.1:{port}", process, log_path, config_path)
        started.servers.append(server)
        _wait_until_ready(server)
        return server

    yield start

    for server in started.servers:
        _stop(server.process)


def _wait_until_ready(server: PrometheusServer) -> None:
    deadline = time.monotonic() + PROMETHEUS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise PrometheusError(
                f"Prometheus exited with code {server.process.returncode} "
                f"at start\n{tail(server.log_path)}"
            )
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise PrometheusError(
        f"Prometheus not ready after {PROMETHEUS_START_TIMEOUT_S:.0f}s\n{tail(server.log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=PROMETHEUS_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=PROMETHEUS_STOP_TIMEOUT_S)
