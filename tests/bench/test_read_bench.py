"""The read-side benchmark on a small ledger, so the loader and the queries never rot.

2,000 payments on SQLite, each query kind three times: the figures must be printed and
written, every search must find payments, and the loaded rows must hold together (the
loader's postings balance, its chains link, every payment has its notifications). No
timing is compared: a shared machine is no place to judge 100 ms.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from engine.ledger.database import make_engine
from engine.ledger.models import LedgerEntry, Notification, Payment
from engine.read.audience import Audience
from engine.read.payments import PaymentFilter, search_payments
from engine.read.snapshot import snapshot
from tooling.bench.read_bench import query_kinds
from tooling.bench.read_http import VIAS

PAYMENTS = 2_000


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("read-bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_DATA_DIR"] = str(tmp)
    ledger, out = tmp / "read.db", tmp / "read.json"
    run = subprocess.run(
        [sys.executable, "-m", "sakk", "bench-read", "--payments", str(PAYMENTS),
         "--repeat", "3", "--backends", "sqlite", "--sqlite-file", str(ledger),
         "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    return ledger, out, run.stdout


@pytest.fixture(scope="module")
def http_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The same kinds through a console the benchmark starts, on a ledger of its own."""
    tmp = tmp_path_factory.mktemp("read-bench-http")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_DATA_DIR"] = str(tmp)
    out = tmp / "read-http.json"
    run = subprocess.run(
        [sys.executable, "-m", "sakk", "bench-read", "--http", "--payments", str(PAYMENTS),
         "--repeat", "3", "--backends", "sqlite", "--sqlite-file", str(tmp / "read.db"),
         "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    return out, run.stdout


@pytest.mark.slow
def test_bench_read_http_asks_the_console_every_kind_through_api_and_pages(http_run):
    """Each kind through the JSON API and the pages: answered (a non-200 stops the run, so a
    zero exit means every request got 200) and never empty; the figures printed and written."""
    out, printed = http_run
    report = json.loads(out.read_text())
    assert report["via"] == "http"
    kinds = report["backends"]["sqlite"]["kinds"]
    expected = {
        (via, kind, audience)
        for via in VIAS
        for kind, audience, _query in query_kinds(topology=None)  # type: ignore[arg-type]
    }
    assert {(k["via"], k["kind"], k["audience"]) for k in kinds} == expected
    assert VIAS == ("api", "page")
    for k in kinds:
        assert k["runs"] == 3 and k["rows_mean"] > 0 and k["empty"] == 0, k
        assert 0 < k["p50_ms"] <= k["p95_ms"] <= k["p99_ms"] <= k["max_ms"], k
    assert "Read side through HTTP on sqlite, 2,000 payments" in printed
    assert "p99 < 100 ms" in printed and "load average at the end" in printed
    assert "console on http://127.0.0.1:" in printed


@pytest.mark.slow
def test_bench_read_prints_and_writes_every_kind_with_rows(bench_run):
    _ledger, out, printed = bench_run
    report = json.loads(out.read_text())
    kinds = report["backends"]["sqlite"]["kinds"]
    expected = {(kind, audience) for kind, audience, _query in query_kinds(topology=None)}  # type: ignore[arg-type]
    assert {(k["kind"], k["audience"]) for k in kinds} == expected
    for k in kinds:
        assert k["runs"] == 3 and k["rows_mean"] > 0, k
        assert 0 < k["p50_ms"] <= k["p95_ms"] <= k["p99_ms"] <= k["max_ms"], k
    assert report["backends"]["sqlite"]["rows_loaded"] > PAYMENTS * 10
    assert "Read side on sqlite, 2,000 payments" in printed
    assert "p99 < 100 ms" in printed


@pytest.mark.slow
def test_loaded_ledger_balances_and_every_payment_is_told(bench_run):
    ledger, _out, _printed = bench_run
    engine = make_engine(f"sqlite:///{ledger}")
    e, n, p = LedgerEntry.__table__, Notification.__table__, Payment.__table__
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(p)).scalar_one() == PAYMENTS
        unbalanced = conn.execute(
            select(e.c.posting_id).group_by(e.c.posting_id).having(func.sum(e.c.amount_minor) != 0)
        ).all()
        assert unbalanced == []
        untold = conn.execute(
            select(func.count()).select_from(p).where(~p.c.payment_id.in_(select(n.c.payment_id)))
        ).scalar_one()
        assert untold == 0
        states = set(conn.execute(select(p.c.state).distinct()).scalars())
        assert {"SETTLED", "REJECTED", "FAILED", "CAPTURED"} <= states
        gaps = conn.execute(text(
            "SELECT count(*) FROM ledger_entries a JOIN ledger_entries b "
            "ON b.chain_id = a.chain_id AND b.chain_seq = a.chain_seq + 1 "
            "WHERE b.prev_hash <> a.entry_hash")).scalar_one()  # fmt: skip
        assert gaps == 0
    engine.dispose()


@pytest.mark.slow
def test_bank_search_on_the_loaded_ledger_keeps_to_its_own_payments(bench_run):
    ledger, _out, _printed = bench_run
    engine = make_engine(f"sqlite:///{ledger}")
    with snapshot(engine) as conn:
        for which in (PaymentFilter(), PaymentFilter(state="SETTLED"), PaymentFilter(bank="011"),
                      PaymentFilter(channel="POS"), PaymentFilter(reason_code="AC01")):  # fmt: skip
            page = search_payments(conn, Audience.bank("007"), which, limit=50)
            assert len(page) > 0, which
            assert all("007" in (v.payer_bank, v.payee_bank) for v in page.items)
            times = [(v.occurred_at, v.payment_id) for v in page.items]
            assert times == sorted(times, reverse=True)
    engine.dispose()


@pytest.mark.slow
def test_search_walked_page_by_page_finds_what_a_plain_filter_finds(bench_run):
    """Each side walked apart, merged, paged: exactly the payments a filter over all rows keeps."""
    ledger, _out, _printed = bench_run
    engine = make_engine(f"sqlite:///{ledger}")
    p = Payment.__table__
    with snapshot(engine) as conn:
        rows = conn.execute(select(p)).all()
        last4 = rows[0].payer_account[-4:]
        since = min(r.occurred_at for r in rows) + (max(r.occurred_at for r in rows) - min(
            r.occurred_at for r in rows)) / 2  # fmt: skip
        cases = [
            (Audience.bank("007"), PaymentFilter(),
             lambda r: "007" in (r.payer_bank, r.payee_bank)),
            (Audience.bank("310"), PaymentFilter(state="SETTLED"),
             lambda r: "310" in (r.payer_bank, r.payee_bank) and r.state == "SETTLED"),
            (Audience.operator(), PaymentFilter(account_last4=last4),
             lambda r: last4 in (r.payer_account[-4:], r.payee_account[-4:])),
            (Audience.bank("011"), PaymentFilter(bank="007", channel="WEB"),
             lambda r: {"011", "007"} <= {r.payer_bank, r.payee_bank} or (
                 r.payer_bank == r.payee_bank == "011" == "007")),
            (Audience.operator(), PaymentFilter(reason_code="AM04", since=since),
             lambda r: r.reason_code == "AM04" and r.occurred_at >= since),
        ]  # fmt: skip
        for audience, which, keep in cases:
            if which.channel:
                keep = (lambda k, c: lambda r: k(r) and r.channel == c)(keep, which.channel)
            expected = sorted(
                ((r.occurred_at, r.payment_id) for r in rows if keep(r)), reverse=True
            )
            found, cursor = [], None
            for _page in range(PAYMENTS):
                page = search_payments(conn, audience, which, cursor, limit=37)
                found += [(v.occurred_at.replace(tzinfo=None), v.payment_id) for v in page.items]
                if (cursor := page.next_cursor) is None:
                    break
            assert expected and found == expected, (audience, which)
    engine.dispose()


@pytest.mark.slow
def test_loaded_ledger_passes_the_auditors_verification(bench_run):
    """Chains, double entry, the lifecycle, positions: what `sakk audit verify` checks."""
    ledger, _out, _printed = bench_run
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_DATA_DIR"] = str(ledger.parent)
    run = subprocess.run(
        [sys.executable, "-m", "sakk", "audit", "verify", "--database-url", str(ledger)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    assert "OK every hash chain intact" in run.stdout
