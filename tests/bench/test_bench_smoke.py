"""A few-second run of the benchmark so it never rots; its figures are never asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.slow
def test_bench_smoke_run_writes_every_figure_the_comparison_needs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_DATA_DIR"] = str(tmp_path)
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine",
            "bench",
            "--payments",
            "200",
            "--raw-messages",
            "1000",
            "--latency-rate",
            "50",
            "--latency-seconds",
            "2",
            "--backends",
            "sqlite,postgresql",
            "--output",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["raw_hop_messages_per_s"] > 0
    for backend in ("sqlite", "postgresql"):
        figures = report["backends"][backend]
        assert figures["payments"] >= 200
        for key in (
            "payments_per_s",
            "ratio_to_raw_hop",
            "latency_p99_s",
            "latency_offered_per_s",
            "latency_p50_s",
            "latency_p95_s",
            "latency_max_s",
        ):
            assert figures[key] is not None, key
        assert set(figures["processes"]) == {"validator-1", "settlement-1", "notification-1"}
    assert "full flow payments/s" in run.stdout
