"""``sakk bench-read``: the console's searches and a payment's page on a ledger of a million."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from engine.config import Settings
from engine.ledger.database import make_engine
from engine.ledger.reference import read_file
from sakk.app import TOPOLOGY
from sakk.cli import cli
from sakk.cli.bench import BACKENDS, MIN_REPORT_WIDTH, POSTGRES_ADMIN_URL, _backends
from tooling.bench.read_bench import (
    BUDGET_MS,
    MAX_REPEAT,
    KindResult,
    load_average,
    run_read_bench,
)
from tooling.bench.read_load import MAX_PAYMENTS, LoadResult, ensure_ledger

DEFAULT_DATABASE = "sakk_bench_read"


@cli.command("bench-read")
@click.option(
    "--payments",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(1, MAX_PAYMENTS),
    help="Payments in the ledger searched.",
)
@click.option(
    "--repeat",
    default=200,
    show_default=True,
    type=click.IntRange(1, MAX_REPEAT),
    help="Runs of each query kind (after 5 untimed).",
)
@click.option(
    "--seed",
    default=22,
    show_default=True,
    type=int,
    help="The loaded ledger's, and the queries' arguments'.",
)
@click.option("--backends", default=",".join(BACKENDS), show_default=True)
@click.option(
    "--sqlite-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The SQLite ledger (default: var/bench/read-PAYMENTS.db), kept for reuse.",
)
@click.option(
    "--postgres-admin-url",
    default=POSTGRES_ADMIN_URL,
    show_default=True,
    envvar="SAKK_BENCH_POSTGRES_ADMIN_URL",
    help="Where the database is created.",
)
@click.option(
    "--postgres-database",
    default=DEFAULT_DATABASE,
    show_default=True,
    help="The PostgreSQL ledger, created if missing, kept for reuse.",
)
@click.option("--reload", is_flag=True, help="Load the ledgers again, even if full.")
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="JSON report (default: var/bench/read-latest.json).",
)
@click.pass_obj
def bench_read(settings: Settings, **given: Any) -> None:
    """Time the read side on a large ledger: searches and a payment's page, p99 under 100 ms.

    Each backend's ledger is loaded once, straight into the database
    (``tooling.bench.read_load``: every row a payment leaves, in the demo's proportions),
    and kept: the next run reuses it (migrated to the newest schema first). Then every
    query kind runs --repeat times, each in a read-only snapshot of its own, as an
    operator and as a bank user; p50, p95, p99 and max are printed per kind, with
    whether p99 stays under 100 ms.
    """
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, MIN_REPORT_WIDTH))
    say: Callable[[str], None] = lambda text: console.print(f"[dim]… {text}[/]")  # noqa: E731
    data = read_file(settings.reference_file)
    report: dict[str, Any] = {
        "payments": given["payments"],
        "repeat": given["repeat"],
        "budget_ms": BUDGET_MS,
        "backends": {},
    }
    for backend in _backends(given["backends"]):
        url = _ledger_url(settings, backend, given)
        say(f"{backend}: ledger of {given['payments']:,} payments")
        try:
            loaded = ensure_ledger(url, data, given["payments"], given["seed"], say)
        except ValueError as exc:
            raise click.ClickException(f"{backend}: {exc} (--reload)") from exc
        engine = make_engine(url)
        try:
            results = run_read_bench(engine, TOPOLOGY, given["repeat"], given["seed"], say)
        finally:
            engine.dispose()
        busy = load_average()
        _print(console, backend, given["payments"], loaded, results)
        console.print(f"load average at the end: {busy:.1f} on {os.cpu_count()} cores")
        report["backends"][backend] = {
            "load_average": round(busy, 2),
            "load_seconds": round(loaded.seconds, 1) if loaded else None,
            "rows_loaded": loaded.rows if loaded else None,
            "kinds": [r.as_json() for r in results],
        }
    path = given["output"] or settings.data_dir / "bench" / "read-latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written {path}")


def _ledger_url(settings: Settings, backend: str, given: dict[str, Any]) -> str:
    """The backend's ledger: a SQLite file, or a PostgreSQL database created if missing."""
    if backend == "sqlite":
        path = given["sqlite_file"] or settings.data_dir / "bench" / f"read-{given['payments']}.db"
        if given["reload"]:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    name, admin = given["postgres_database"], given["postgres_admin_url"]
    with psycopg.connect(admin, autocommit=True) as conn:
        if given["reload"]:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def _print(
    console: Console,
    backend: str,
    payments: int,
    loaded: LoadResult | None,
    results: list[KindResult],
) -> None:
    load = f"loaded in {loaded.seconds:.0f} s ({loaded.rows:,} rows)" if loaded else "ledger reused"
    table = Table(title=f"Read side on {backend}, {payments:,} payments ({load})")
    for column in ("query", "as", "runs", "rows", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column in ("query", "as") else "right")
    table.add_column(f"p99 < {BUDGET_MS:.0f} ms")
    for r in results:
        table.add_row(
            r.kind,
            r.audience,
            str(r.runs),
            f"{r.rows_mean:.1f}",
            f"{r.p50_ms:.1f}",
            f"{r.p95_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.max_ms:.1f}",
            "[green]pass[/]" if r.passed else "[red]FAIL[/]",
        )
    console.print(table)
    over = [f"{r.kind} ({r.audience})" for r in results if not r.passed]
    console.print(
        f"{backend}: "
        + (
            f"p99 over {BUDGET_MS:.0f} ms: {', '.join(over)}"
            if over
            else f"every p99 under {BUDGET_MS:.0f} ms"
        )
    )
