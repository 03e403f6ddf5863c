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
from engine.supervisor import settings_env
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
from tooling.bench.read_http import run_http_bench
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
    "--http",
    is_flag=True,
    help="Through a console (its own process): the JSON API and the pages, with API tokens.",
)
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

    With --http the same kinds go through a real ``sakk console`` started on a free port
    over the ledger: its JSON API and its pages, each asked on a keep-alive connection
    with an API token (an operator's, a bank user's), timed to the last byte received.
    """
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, MIN_REPORT_WIDTH))
    say: Callable[[str], None] = lambda text: console.print(f"[dim]… {text}[/]")  # noqa: E731
    data = read_file(settings.reference_file)
    report: dict[str, Any] = {
        "via": "http" if given["http"] else "direct",
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
        report["backends"][backend] = _run_backend(console, settings, url, loaded, given, say)
    latest = "read-http-latest.json" if given["http"] else "read-latest.json"
    path = given["output"] or settings.data_dir / "bench" / latest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"written {path}")


def _run_backend(
    console: Console, settings: Settings, url: str, loaded: LoadResult | None,
    given: dict[str, Any], say: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Every kind on one backend's ledger (directly, or through a console); printed."""
    backend = "sqlite" if url.startswith("sqlite") else "postgresql"
    engine = make_engine(url)
    try:
        results: list[KindResult]
        if given["http"]:
            log = settings.data_dir / "bench" / f"console-{backend}.log"
            env = settings_env(settings.replace(database_url=url))
            results = [*run_http_bench(engine, url, env, log, given["repeat"], given["seed"], say)]
        else:
            results = run_read_bench(engine, TOPOLOGY, given["repeat"], given["seed"], say)
    finally:
        engine.dispose()
    busy = load_average()
    _print(console, backend, given["payments"], loaded, results, given["http"])
    console.print(f"load average at the end: {busy:.1f} on {os.cpu_count()} cores")
    return {
        "load_average": round(busy, 2),
        "load_seconds": round(loaded.seconds, 1) if loaded else None,
        "rows_loaded": loaded.rows if loaded else None,
        "kinds": [r.as_json() for r in results],
    }


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
    http: bool = False,
) -> None:
    load = f"loaded in {loaded.seconds:.0f} s ({loaded.rows:,} rows)" if loaded else "ledger reused"
    through = " through HTTP" if http else ""
    table = Table(title=f"Read side{through} on {backend}, {payments:,} payments ({load})")
    left = ("via", "query", "as") if http else ("query", "as")
    for column in (*left, "runs", "rows", "p50 ms", "p95 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column in left else "right")
    table.add_column(f"p99 < {BUDGET_MS:.0f} ms")
    for r in results:
        table.add_row(
            *([getattr(r, "via", "")] if http else []),
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
    over = [
        f"{getattr(r, 'via', '') + ' ' if http else ''}{r.kind} ({r.audience})"
        for r in results
        if not r.passed
    ]
    console.print(
        f"{backend}: "
        + (
            f"p99 over {BUDGET_MS:.0f} ms: {', '.join(over)}"
            if over
            else f"every p99 under {BUDGET_MS:.0f} ms"
        )
    )
