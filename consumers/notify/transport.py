"""One HTTP POST under a hard deadline: the webhook channel's transport.

A socket timeout alone bounds each read, not a server that trickles one byte at a
time, so a watchdog shuts the socket down at the deadline. Outside the bound: DNS
resolution (the standard library cannot time it out) and connecting to more than one
resolved address (each gets up to the deadline). Each POST opens its own connection:
no socket is shared between threads and no stale keep-alive connection is reused
after a bank's restart.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from typing import Any
from urllib.parse import SplitResult, urlsplit

RESPONSE_DETAIL_MAX_BYTES = 256  # of a refusal's body, kept in the error for the operator


def post_once(
    url: SplitResult, headers: dict[str, str], body: bytes, timeout_s: float
) -> tuple[int, str]:
    """One POST under a hard deadline; returns (status, start of a refusal's body)."""
    connection_class = HTTPSConnection if url.scheme == "https" else HTTPConnection
    connection = connection_class(url.hostname or "", url.port, timeout=timeout_s)
    fired = threading.Event()
    watchdog = threading.Timer(timeout_s, _shut_down, (connection, fired))
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.connect()
        if fired.is_set():
            raise TimeoutError
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        connection.request("POST", target, body, headers)
        response = connection.getresponse()
        if fired.is_set():  # headers cut short by the watchdog may still parse
            raise TimeoutError
        return response.status, "" if response.status < 300 else _detail(response)
    except (OSError, HTTPException) as exc:
        if fired.is_set():
            raise TimeoutError from exc
        raise
    finally:
        watchdog.cancel()
        watchdog.join()  # never shut down a socket after close: its fd may be reused
        connection.close()


def _shut_down(connection: HTTPConnection, fired: threading.Event) -> None:
    """Wake any blocked read or write; the base-class call leaves TLS state alone."""
    fired.set()
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _detail(response: Any) -> str:
    """The first bytes of a refusal's body: often the bank's own reason."""
    try:
        raw = response.read(RESPONSE_DETAIL_MAX_BYTES)
    except (OSError, HTTPException):
        return ""
    return " ".join(raw.decode("utf-8", "replace").split())


def url_problem(url: str | None, bank: str) -> str | None:
    """Why a bank's ``webhook_url`` cannot be posted to, or None."""
    if not url:
        return f"no webhook_url for bank {bank!r}: nothing to deliver to"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"webhook_url for bank {bank!r} is not an http(s) URL with a host"
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return f"webhook_url for bank {bank!r} has an invalid port"
    return None
