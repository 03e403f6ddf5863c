"""The benchmark's report: one JSON document, and the same figures as tables.

Per backend: the uniform full flow (payments/s, ratio to the raw hop, CPU and memory
per stage), its latency curve, the skewed run beside the uniform one (payments/s and
p99 at the same offered rate, the same payment count), and on PostgreSQL the scale-out
beside one instance, and the knee of the latency curve. Beside every backend: the raw
hop and the null pipeline (the topology's ceiling), and the full flow's ratio to each.
A part that did not run is absent from the JSON and its rows are left out of the tables.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from sakk.app import TOPOLOGY
from tooling.bench.flow import FlowResult, SessionResult
from tooling.bench.knee import knee_figures, knee_line
from tooling.bench.latency import LatencyResult
from tooling.bench.null_pipeline import (
    NullPipelineResult,
    null_pipeline_figures,
    null_pipeline_line,
)
from tooling.bench.raw_hop import RawHopResult
from tooling.bench.signatures import VerificationResult

STAGES = TOPOLOGY.names


@dataclass
class BackendRuns:
    """The sessions run on one backend; None where a part was not run."""

    uniform: SessionResult
    skew: SessionResult | None = None
    scale_out: SessionResult | None = None


def build_report(
    raw: RawHopResult,
    runs: dict[str, BackendRuns],
    partitions: int,
    verification: VerificationResult,
    options: dict[str, Any],
    null: NullPipelineResult | None = None,
) -> dict[str, Any]:
    from tooling.workload.profiles import HOT_MERCHANT, HOT_PAYER_BANK

    backends: dict[str, dict[str, Any]] = {}
    for backend, r in runs.items():
        figures = _uniform(r.uniform.flow, raw.messages_per_s) if r.uniform.flow else {}
        if null is not None and r.uniform.flow:
            figures["ratio_to_null_pipeline"] = _ratio(
                r.uniform.flow.payments_per_s, null.messages_per_s
            )
        figures["chain_verified_entries"] = r.uniform.chain_entries_verified
        figures["latency_curve"] = [_latency(lat) for lat in r.uniform.latencies]
        if r.uniform.latencies:
            figures["knee"] = _knee(r.uniform)
        if r.skew is not None and r.skew.flow is not None:
            figures["skew"] = _skew(r, HOT_PAYER_BANK, HOT_MERCHANT)
        if r.scale_out is not None and r.scale_out.flow is not None:
            figures["scale_out"] = _scale_out(r)
        backends[backend] = figures
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "partitions": partitions,
        "options": options,
        "raw_hop_messages_per_s": round(raw.messages_per_s, 1),
        "raw_hop": asdict(raw) | {"messages_per_s": round(raw.messages_per_s, 1)},
        "signature_verification": {
            "payments": verification.payments,
            "cpu_s_per_1000_payments": round(verification.cpu_s_per_1000_payments, 4),
        },
        "backends": backends,
    }  # fmt: skip
    return report | ({"null_pipeline": null_pipeline_figures(null)} if null is not None else {})


def _knee(uniform: SessionResult) -> dict[str, Any]:
    figures = knee_figures(uniform.latencies + uniform.knee_probes)
    return figures | {"probes": [_latency(lat) for lat in uniform.knee_probes]}


def _flow(f: FlowResult) -> dict[str, Any]:
    return {
        "payments": f.payments, "seconds": round(f.seconds, 3),
        "payments_per_s": round(f.payments_per_s, 1),
        "processes": {p.label: {"peak_rss_mib": round(p.peak_rss_bytes / 2**20, 1),
                                "cpu_s_per_1000_payments": round(p.cpu_s * 1000 / f.payments, 3)}
                      for p in f.processes},
    }  # fmt: skip


def _uniform(f: FlowResult, raw_per_s: float) -> dict[str, Any]:
    return _flow(f) | {"ratio_to_raw_hop": _ratio(f.payments_per_s, raw_per_s)}


def _latency(lat: LatencyResult) -> dict[str, Any]:
    return {
        "offered_per_s": lat.offered_per_s, "offered_s": lat.offered_s,
        "achieved_publish_per_s": round(lat.achieved_publish_per_s, 1),
        "payments": lat.payments,
        "p50_s": round(lat.p50_s, 4), "p95_s": round(lat.p95_s, 4),
        "p99_s": round(lat.p99_s, 4), "max_s": round(lat.max_s, 4),
    }  # fmt: skip


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _skew(r: BackendRuns, hot_payer_bank: str, hot_merchant: str) -> dict[str, Any]:
    if r.skew is None or r.skew.flow is None:
        raise ValueError("no skewed run to report")
    skew, uniform = r.skew.flow, r.uniform.flow
    figures: dict[str, Any] = {
        "hot_payer_bank": hot_payer_bank,
        "hot_merchant": hot_merchant,
        "hot_share": round(r.skew.hot_share, 3),
        **_flow(skew),
        "ratio_to_uniform": _ratio(
            skew.payments_per_s, uniform.payments_per_s if uniform else None
        ),
        "chain_verified_entries": r.skew.chain_entries_verified,
    }
    if r.skew.latencies:
        lat = r.skew.latencies[0]
        same_rate = _at_rate(r.uniform.latencies, lat.offered_per_s)
        figures["latency"] = _latency(lat)
        figures["uniform_p99_s"] = round(same_rate.p99_s, 4) if same_rate else None
        figures["p99_ratio_to_uniform"] = _ratio(lat.p99_s, same_rate.p99_s if same_rate else None)
    return figures


def _scale_out(r: BackendRuns) -> dict[str, Any]:
    if r.scale_out is None or r.scale_out.flow is None:
        raise ValueError("no scale-out run to report")
    scaled, one = r.scale_out.flow, r.uniform.flow
    figures = {
        "instances_per_stage": scaled.instances,
        **_flow(scaled),
        "one_instance_payments_per_s": round(one.payments_per_s, 1) if one else None,
        "ratio_to_one_instance": _ratio(scaled.payments_per_s, one.payments_per_s if one else None),
        "cpu_s_per_1000_payments_by_stage": {
            stage: round(cpu_s * 1000 / scaled.payments, 3)
            for stage, cpu_s in scaled.cpu_s_by_stage().items()
        },
        "chain_verified_entries": r.scale_out.chain_entries_verified,
    }
    return figures


def _at_rate(latencies: Sequence[LatencyResult], rate_per_s: int) -> LatencyResult | None:
    return next((lat for lat in latencies if lat.offered_per_s == rate_per_s), None)


# --- tables ------------------------------------------------------------------------------


def print_report(console: Console, report: dict[str, Any]) -> None:
    console.print(_main_table(report))
    curve = _curve_table(report)
    if curve.row_count:
        console.print(curve)
    console.print(
        f"raw hop (kafka-python consume + produce + commit, no work): "
        f"{report['raw_hop_messages_per_s']:,.0f} messages/s"
    )
    for line in (null_pipeline_line(report), knee_line(report)):
        if line:
            console.print(line, soft_wrap=True)  # one line, whatever the width
    console.print(verification_line(report))


def _main_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"Sakk benchmark ({report['machine']['cpus']} CPUs, "
        f"{report['partitions']} partitions, consumers in separate processes)"
    )
    table.add_column("measure")
    backends = report["backends"]
    for b in backends:
        table.add_column(b, justify="right")
    for title, path, fmt in _main_rows(backends):
        values = [_dig(figures, path) for figures in backends.values()]
        if any(v is not None for v in values):
            table.add_row(title, *[_fmt(v, fmt) for v in values])
    return table


Row = tuple[str, tuple[str, ...], str]  # title, path to the figure, format


def _main_rows(backends: dict[str, Any]) -> list[Row]:
    skew = next((f["skew"] for f in backends.values() if "skew" in f), None)
    scaled = next((f["scale_out"] for f in backends.values() if "scale_out" in f), None)
    rows: list[Row] = [
        ("full flow payments/s (uniform)", ("payments_per_s",), "{:,.0f}"),
        ("ratio to raw hop", ("ratio_to_raw_hop",), "{:.2f}"),
        ("ratio to null pipeline", ("ratio_to_null_pipeline",), "{:.3f}"),
        ("knee: highest offered/s, p99 < 1 s", ("knee", "offered_per_s"), "{:,}"),
        ("knee: first offered/s, p99 ≥ 1 s", ("knee", "first_over_per_s"), "{:,}"),
    ]
    if skew is not None:
        rows += [
            ("skewed: share to the hot merchant", ("skew", "hot_share"), "{:.0%}"),
            ("skewed payments/s", ("skew", "payments_per_s"), "{:,.0f}"),
            ("skewed / uniform payments/s", ("skew", "ratio_to_uniform"), "{:.2f}"),
        ]
        if "latency" in skew:
            rate = f"{skew['latency']['offered_per_s']:,}/s"
            rows += [
                (f"uniform p99 at {rate} (s)", ("skew", "uniform_p99_s"), "{:.3f}"),
                (f"skewed p99 at {rate} (s)", ("skew", "latency", "p99_s"), "{:.3f}"),
            ]
    if scaled is not None:
        n = scaled["instances_per_stage"]
        rows += [
            (f"scale-out payments/s ({n} per stage)", ("scale_out", "payments_per_s"), "{:,.0f}"),
            ("scale-out / one instance", ("scale_out", "ratio_to_one_instance"), "{:.2f}"),
        ]
    for stage in STAGES:
        label = f"{stage}-1"
        rows += [
            (f"{label} peak RSS (MiB)", ("processes", label, "peak_rss_mib"), "{:.0f}"),
            (f"{label} CPU s / 1,000 payments", ("processes", label, "cpu_s_per_1000_payments"),
             "{:.3f}"),
        ]  # fmt: skip
    return rows


def _curve_table(report: dict[str, Any]) -> Table:
    table = Table(title="Latency, initiation to last notification (s), at each offered rate")
    for name in ("backend", "traffic", "offered/s", "achieved/s", "payments"):
        table.add_column(name, justify="left" if name in ("backend", "traffic") else "right")
    for name in ("p50", "p95", "p99", "max"):
        table.add_column(name, justify="right")
    for backend, figures in report["backends"].items():
        points = [("uniform", p) for p in figures.get("latency_curve", [])]
        skew_point = figures.get("skew", {}).get("latency")
        if skew_point:
            rate = skew_point["offered_per_s"]
            same = [i for i, (_, p) in enumerate(points) if p["offered_per_s"] == rate]
            points.insert(same[0] + 1 if same else len(points), ("skewed", skew_point))
        points += [("knee probe", p) for p in figures.get("knee", {}).get("probes", [])]
        for traffic, p in points:
            percentiles = (f"{p[k]:.3f}" for k in ("p50_s", "p95_s", "p99_s", "max_s"))
            table.add_row(
                backend, traffic, f"{p['offered_per_s']:,}", f"{p['achieved_publish_per_s']:,.0f}",
                f"{p['payments']:,}", *percentiles,
            )  # fmt: skip
    return table


def verification_line(report: dict[str, Any]) -> str:
    """The validator's signature checks alone, and their share of its whole CPU."""
    per_1000 = report["signature_verification"]["cpu_s_per_1000_payments"]
    shares = []
    for backend, figures in report["backends"].items():
        whole = _dig(figures, ("processes", "validator-1", "cpu_s_per_1000_payments"))
        if whole:
            shares.append(f"{per_1000 / whole:.0%} of the validator's CPU on {backend}")
    share = f" ({', '.join(shares)})" if shares else ""
    return (
        f"signature verification (Ed25519, KeyRing.verify): {per_1000:.3f} CPU s "
        f"per 1,000 payments{share}"
    )


def _dig(figures: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = figures
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _fmt(value: object, fmt: str) -> str:
    return "—" if value is None else fmt.format(value)
