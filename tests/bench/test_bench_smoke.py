"""A short run of every part of the benchmark so it never rots: figures present, never compared.

Small numbers throughout: 200 payments per throughput run, 1,000 messages through the raw
hop and 2,000 through the null pipeline (its three processes start in a few seconds), a
two-point latency curve of two seconds each with at most one knee probe (two seconds, only
if the curve crossed 1 s), the skewed run at one of the curve's rates, and the scale-out on
PostgreSQL. The report must hold every figure the comparisons need; the null pipeline's
and the knee's must be positive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CURVE_RATES = (50, 100)
SKEW_RATE = 100
NULL_MESSAGES = 2_000
PRINTED = ("full flow payments/s", "skewed payments/s", "scale-out payments/s",
           "Latency, initiation to last notification", "signature verification",
           "ratio to null pipeline", "messages/s end to end", "CPU ms per message per hop",
           "knee (highest offered payments/s")  # fmt: skip
POINT_KEYS = {"offered_per_s", "offered_s", "achieved_publish_per_s", "payments",
              "p50_s", "p95_s", "p99_s", "max_s"}  # fmt: skip


@pytest.mark.integration
@pytest.mark.slow
def test_bench_smoke_run_writes_every_figure_the_comparison_needs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_DATA_DIR"] = str(tmp_path)
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable, "-m", "sakk", "bench",
            "--payments", "200",
            "--raw-messages", "1000",
            "--null-messages", str(NULL_MESSAGES),
            "--knee-steps", "1",
            "--curve-rates", ",".join(str(r) for r in CURVE_RATES),
            "--curve-seconds", "2",
            "--skew-rate", str(SKEW_RATE),
            "--backends", "sqlite,postgresql",
            "--output", str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["raw_hop_messages_per_s"] > 0
    assert report["signature_verification"]["cpu_s_per_1000_payments"] > 0
    null = report["null_pipeline"]
    assert null["messages"] == NULL_MESSAGES
    assert null["messages_per_s"] > 0 and null["cpu_ms_per_message_per_hop"] > 0
    assert set(null["hops"]) == {"validator", "settlement", "notification"}
    for backend in ("sqlite", "postgresql"):
        figures = report["backends"][backend]
        assert figures["payments"] >= 200
        assert figures["ratio_to_null_pipeline"] > 0
        assert figures["knee"]["offered_per_s"] > 0
        for key in ("payments_per_s", "ratio_to_raw_hop", "chain_verified_entries"):
            assert figures[key] is not None, key
        assert set(figures["processes"]) == {"validator-1", "settlement-1", "notification-1"}
        curve = figures["latency_curve"]
        assert [p["offered_per_s"] for p in curve] == list(CURVE_RATES)
        assert all(set(p) == POINT_KEYS and p["payments"] > 0 for p in curve)
        skew = figures["skew"]
        assert skew["payments"] == figures["payments"]  # the same count as the uniform run
        assert skew["hot_share"] >= 0.65
        for key in ("payments_per_s", "ratio_to_uniform", "uniform_p99_s"):
            assert skew[key] is not None, key
        assert skew["latency"]["offered_per_s"] == SKEW_RATE
    assert "scale_out" not in report["backends"]["sqlite"]
    scaled = report["backends"]["postgresql"]["scale_out"]
    assert scaled["instances_per_stage"] == 2
    assert scaled["payments"] == report["backends"]["postgresql"]["payments"]
    assert len(scaled["processes"]) == 6
    assert scaled["ratio_to_one_instance"] is not None
    assert scaled["chain_verified_entries"] > 0
    for text in PRINTED:
        assert text in run.stdout, text
