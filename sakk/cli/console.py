"""``sakk console``: the console's HTTP API and pages over the ledger (docs/console.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine.config import Settings
from sakk.app import ledger_engine
from sakk.cli import cli

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600


@cli.command("console")
@click.option("--database-url", "database_url", metavar="URL", help="Ledger (default: live).")
@click.option("--host", default=DEFAULT_HOST, show_default=True)
@click.option("--port", type=click.IntRange(0, 65_535), default=DEFAULT_PORT, show_default=True)
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Serve over TLS with this certificate (PEM); needs --keyfile.")  # fmt: skip
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--secure-cookies/--plain-cookies", default=None,
    help="Mark the session cookie Secure (default: on with --certfile; behind a TLS proxy, on).",
)  # fmt: skip
@click.option("--session-ttl-s", type=int, default=8 * 3600, show_default=True)
@click.option("--openapi", is_flag=True, help="Print the API's OpenAPI document and exit.")
@click.pass_obj
def console(
    settings: Settings, database_url: str | None, host: str, port: int, certfile: Path | None,
    keyfile: Path | None, secure_cookies: bool | None, session_ttl_s: int, openapi: bool,
) -> None:  # fmt: skip
    """Serve the console: a JSON API under /api/v1 and pages for operators, auditors, banks."""
    from sakk.console.app import create_app
    from sakk.console.config import ConsoleConfig, ConsoleConfigError

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together")
    url = database_url or settings.ledger_url
    secure = certfile is not None if secure_cookies is None else secure_cookies
    try:
        config = ConsoleConfig(url, session_ttl_s=session_ttl_s, secure_cookies=secure)
    except ConsoleConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    if openapi:
        sys.stdout.write(openapi_text(create_app(config)))
        return
    settings = settings.replace(database_url=url)  # what follows an approval runs on it too
    engine = ledger_engine(settings, migrate=True)
    _serve(create_app(config, engine, settings=settings), host, port, certfile, keyfile)


def openapi_text(app: object) -> str:
    """The OpenAPI document as committed in docs/openapi.json (sorted keys, a final newline)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"  # type: ignore[attr-defined]


def _serve(app: object, host: str, port: int, cert: Path | None, key: Path | None) -> None:
    import uvicorn

    scheme = "https" if cert else "http"
    click.echo(
        f"console on {scheme}://{host}:{port}/ (API: /api/v1, its document /api/v1/openapi.json)"
    )
    uvicorn.run(
        app, host=host, port=port, log_level="warning", proxy_headers=False,  # type: ignore[arg-type]
        ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None,
    )  # fmt: skip
