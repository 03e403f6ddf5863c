"""The benchmark report's shape, from made-up results: every part where the comparison needs it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console

from tooling.bench.flow import FlowResult, ProcessUsage, SessionPlan, SessionResult
from tooling.bench.latency import LatencyResult, percentile, summarize
from tooling.bench.null_pipeline import HopUsage, NullPipelineResult
from tooling.bench.raw_hop import RawHopResult
from tooling.bench.report import BackendRuns, build_report, print_report
from tooling.bench.signatures import VerificationResult

RAW = RawHopResult(messages=10_000, message_bytes=210, partitions=6, seconds=1.0)
VERIFICATION = VerificationResult(payments=1_000, cpu_s=0.1)
NULL = NullPipelineResult(
    messages=30_000,
    message_bytes=210,
    partitions=6,
    hops=(
        HopUsage("validator", 30_000, 0.9, started_at=100.0, finished_at=101.0),
        HopUsage("settlement", 30_000, 0.9, started_at=100.1, finished_at=101.4),
        HopUsage("notification", 30_000, 0.9, started_at=100.2, finished_at=101.5),
    ),
)  # 1.5 s end to end, 2.7 CPU s over 90,000 hops
PAYMENTS = 1_000


def flow(backend: str, seconds: float, instances: int = 1, profile: str = "uniform") -> FlowResult:
    processes = [
        ProcessUsage(f"{stage}-{i}", 100 * 2**20, 2.0)
        for stage in ("validator", "settlement", "notification")
        for i in range(1, instances + 1)
    ]
    return FlowResult(backend, PAYMENTS, seconds, processes, profile, instances)


def point(backend: str, rate: int, p99_s: float, profile: str = "uniform") -> LatencyResult:
    return LatencyResult(backend, profile, rate, 10, rate * 10, rate * 0.99, 0.1, 0.2, p99_s, 0.5)


def session(
    backend: str,
    result: FlowResult,
    latencies: Sequence[LatencyResult] = (),
    hot_share: float = 0.0,
) -> SessionResult:
    plan = SessionPlan(
        profile=result.profile,
        throughput_payments=PAYMENTS,
        instances=result.instances,
        rates_per_s=tuple(lat.offered_per_s for lat in latencies),
    )
    return SessionResult(backend, plan, result, list(latencies), PAYMENTS, hot_share, 5_000)


def every_part() -> dict[str, BackendRuns]:
    runs = {}
    for backend in ("sqlite", "postgresql"):
        curve = [point(backend, r, r / 1_000) for r in (250, 500, 1_000, 2_000)]
        runs[backend] = BackendRuns(
            uniform=session(backend, flow(backend, 2.0), curve),
            skew=session(
                backend,
                flow(backend, 4.0, profile="skew"),
                [point(backend, 1_000, 3.0, "skew")],
                hot_share=0.7,
            ),
            scale_out=(
                session(backend, flow(backend, 1.0, instances=2))
                if backend == "postgresql"
                else None
            ),
        )
    return runs


def report_of(runs: dict[str, BackendRuns]) -> dict[str, Any]:
    return build_report(RAW, runs, 6, VERIFICATION, {"payments": PAYMENTS})


def printed(report: dict[str, Any]) -> str:
    console = Console(record=True, width=140)
    print_report(console, report)
    return console.export_text()


def test_report_holds_the_curve_the_skew_beside_uniform_and_the_scale_out_on_postgresql() -> None:
    report = report_of(every_part())
    for backend in ("sqlite", "postgresql"):
        figures = report["backends"][backend]
        assert figures["payments_per_s"] == 500.0
        assert figures["ratio_to_raw_hop"] == 0.05
        assert set(figures["processes"]) == {"validator-1", "settlement-1", "notification-1"}
        curve = figures["latency_curve"]
        assert [p["offered_per_s"] for p in curve] == [250, 500, 1_000, 2_000]
        assert set(curve[0]) == {"offered_per_s", "offered_s", "achieved_publish_per_s",
                                 "payments", "p50_s", "p95_s", "p99_s", "max_s"}  # fmt: skip
        skew = figures["skew"]
        assert (skew["payments"], skew["payments_per_s"], skew["ratio_to_uniform"]) == (
            PAYMENTS, 250.0, 0.5,
        )  # fmt: skip
        assert (skew["hot_payer_bank"], skew["hot_merchant"], skew["hot_share"]) == (
            "007", "Jumia Maroc", 0.7,
        )  # fmt: skip
        assert skew["latency"]["offered_per_s"] == 1_000
        assert (skew["uniform_p99_s"], skew["latency"]["p99_s"]) == (1.0, 3.0)
        assert skew["p99_ratio_to_uniform"] == 3.0
    assert "scale_out" not in report["backends"]["sqlite"]
    scaled = report["backends"]["postgresql"]["scale_out"]
    assert scaled["instances_per_stage"] == 2
    assert (scaled["payments_per_s"], scaled["one_instance_payments_per_s"]) == (1_000.0, 500.0)
    assert scaled["ratio_to_one_instance"] == 2.0
    assert len(scaled["processes"]) == 6
    assert scaled["cpu_s_per_1000_payments_by_stage"] == {
        "validator": 4.0, "settlement": 4.0, "notification": 4.0,
    }  # fmt: skip
    assert scaled["chain_verified_entries"] == 5_000
    assert report["signature_verification"]["cpu_s_per_1000_payments"] == 0.1


def test_table_puts_skew_and_scale_out_beside_uniform_and_the_curve_in_its_own_table() -> None:
    text = printed(report_of(every_part()))
    for row in (
        "full flow payments/s (uniform)",
        "skewed payments/s",
        "skewed / uniform payments/s",
        "uniform p99 at 1,000/s (s)",
        "skewed p99 at 1,000/s (s)",
        "scale-out payments/s (2 per stage)",
        "scale-out / one instance",
        "validator-1 CPU s / 1,000 payments",
        "notification-1 peak RSS (MiB)",
    ):
        assert row in text, row
    assert "Latency, initiation to last notification" in text
    curve_rows = [line for line in text.splitlines() if "uniform" in line and "│" in line]
    assert len([line for line in curve_rows if "sqlite" in line]) == 4
    lines = text.splitlines()
    skewed = next(i for i, line in enumerate(lines) if "skewed" in line and "postgresql" in line)
    assert "1,000" in lines[skewed - 1] and "uniform" in lines[skewed - 1]  # right below its rate
    signature = next(line for line in lines if line.startswith("signature verification"))
    assert "CPU s per 1,000 payments" in signature


def test_parts_not_run_leave_no_rows_and_no_keys() -> None:
    runs = {"sqlite": BackendRuns(uniform=session("sqlite", flow("sqlite", 2.0)))}
    report = report_of(runs)
    figures = report["backends"]["sqlite"]
    assert figures["latency_curve"] == []
    assert "skew" not in figures and "scale_out" not in figures
    text = printed(report)
    assert "full flow payments/s" in text
    assert "skewed" not in text and "scale-out" not in text and "Latency," not in text


def test_percentiles_are_nearest_rank_over_the_phase_payments() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (
        50.0, 99.0, 100.0,
    )  # fmt: skip
    assert percentile([], 0.99) == 0.0
    result = summarize("sqlite", "uniform", 250, 10, 249.0, [0.3, 0.1, 0.2])
    assert (result.payments, result.p50_s, result.max_s) == (3, 0.2, 0.3)


def test_report_holds_the_null_pipeline_the_flow_ratio_to_it_and_each_backend_knee() -> None:
    runs = every_part()
    runs["postgresql"].uniform.knee_probes = [point("postgresql", 750, 0.75)]
    report = build_report(RAW, runs, 6, VERIFICATION, {"payments": PAYMENTS}, NULL)
    null = report["null_pipeline"]
    assert (null["messages_per_s"], null["cpu_ms_per_message_per_hop"]) == (20_000.0, 0.03)
    assert null["hops"]["settlement"] == {"cpu_ms_per_message": 0.03}
    for backend, knee_rate in (("sqlite", 500), ("postgresql", 750)):
        figures = report["backends"][backend]
        assert figures["ratio_to_null_pipeline"] == 0.025  # 500 payments/s over 20,000/s
        knee = figures["knee"]
        assert (knee["offered_per_s"], knee["first_over_per_s"], knee["bounded"]) == (
            knee_rate, 1_000, True,
        )  # fmt: skip
    assert [p["offered_per_s"] for p in report["backends"]["postgresql"]["knee"]["probes"]] == [750]
    text = printed(report)
    assert "ratio to null pipeline" in text
    assert "null pipeline (3 processes" in text and "20,000 messages/s end to end" in text
    assert "0.030 CPU ms per message per hop" in text
    assert "knee (highest offered payments/s with p99 under 1 s): sqlite 500/s" in text
    assert any("knee probe" in line and "750" in line for line in text.splitlines())


def test_without_the_null_pipeline_or_a_curve_neither_figure_appears() -> None:
    report = report_of({"sqlite": BackendRuns(uniform=session("sqlite", flow("sqlite", 2.0)))})
    assert "null_pipeline" not in report
    assert "knee" not in report["backends"]["sqlite"]
    assert "ratio_to_null_pipeline" not in report["backends"]["sqlite"]
    text = printed(report)
    assert "null pipeline" not in text and "knee" not in text
