"""What the consumer processes counted of the faults they rode out, read from their metrics.

Each consumer process serves its counters on a port of its own (``SAKK_METRICS_PORT``),
kept across its restarts. The harness reads them every ``READ_INTERVAL_S``, just before
it kills a process and before the final stop; a process that kills itself (a crash
point, the planted poison) loses what it counted since the last read, so the figures
are lower bounds. The counters are the ones an operator's Prometheus scrapes, never
log lines: rewording a log message changes no figure.
"""

from __future__ import annotations

import http.client
import logging
import socket
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

# What the report calls a fault ridden out -> the counter (engine.metrics) that counts it.
RIDDEN_OUT: Mapping[str, str] = {
    "database retries": "sakk_database_retries_total",
    "produce rewinds": "sakk_produce_failures_total",
    "refused commits": "sakk_offset_commits_refused_total",
    "batches split": "sakk_batches_split_total",
}
READ_INTERVAL_S = 1.0
READ_TIMEOUT_S = 0.5
MAX_INCARNATIONS = 10_000  # processes read in one run (each restart is a new one)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the process binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def parse_counters(text: str, names: Mapping[str, str]) -> Counter[str]:
    """``names``' counters in a /metrics page, summed over their labels, by what they count."""
    wanted = {metric: what for what, metric in names.items()}
    found: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                found[wanted[sample.name]] += int(sample.value)
    return found


class CounterWatch:
    """The last counters read from each process, by (member label, process id)."""

    def __init__(self, host: str, names: Mapping[str, str] = RIDDEN_OUT) -> None:
        self.host = host
        self.names = names
        self.ports: dict[str, int] = {}
        self._last: dict[tuple[str, int], Counter[str]] = {}
        self._read_at = 0.0

    def port_of(self, label: str) -> int:
        """The member's metrics port, the same at every restart."""
        if label not in self.ports:
            self.ports[label] = free_port(self.host)
        return self.ports[label]

    def read(self, label: str, pid: int) -> None:
        """Read one process's counters now; one that does not answer keeps its last."""
        url = f"http://{self.host}:{self.ports[label]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=READ_TIMEOUT_S) as response:  # noqa: S310
                text = response.read().decode("utf-8", errors="replace")
        except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:
            # Killed mid-answer (IncompleteRead) or not up yet: its last reading stands.
            log.debug("%s: metrics unreadable: %s", label, exc)
            return
        if (label, pid) not in self._last and len(self._last) >= MAX_INCARNATIONS:
            raise RuntimeError(f"more than {MAX_INCARNATIONS} consumer processes read")
        self._last[(label, pid)] = parse_counters(text, self.names)

    def due(self, now_s: float) -> bool:
        """True once every ``READ_INTERVAL_S``: time to read every live process."""
        if now_s - self._read_at < READ_INTERVAL_S:
            return False
        self._read_at = now_s
        return True

    def totals(self) -> Counter[str]:
        """Every process's last counters, summed (zeros dropped)."""
        total: Counter[str] = Counter()
        for counted in self._last.values():
            total.update(counted)
        return +total
