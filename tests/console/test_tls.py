"""``sakk console`` given a certificate serves over TLS, and its session cookie is Secure.

A real process on a free port, a throwaway CA (``engine.kafka.certificates``), a client
that trusts only that CA: what a bank's browser does against the switch's console.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from engine.kafka.certificates import make_tls_files
from tests.browser.console import (
    PASSWORD,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    add_user,
    free_port,
    sakk_env,
)
from tests.integration.test_audit_tamper import build_ledger

POLL_S = 0.1


def _wait_for(url: str, context: ssl.SSLContext, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sakk console exited {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/login", timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(POLL_S)
    pytest.fail(f"sakk console did not answer over TLS within {START_TIMEOUT_S} s")


def test_the_console_given_a_certificate_serves_tls_with_secure_cookies(
    sqlite_url: str, tmp_path: Path
) -> None:
    build_ledger(sqlite_url, []).dispose()
    add_user(sqlite_url, "amal", "operator")
    tls = make_tls_files(tmp_path / "tls")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sakk", "console", "--database-url", sqlite_url,
         "--host", "127.0.0.1", "--port", str(port),
         "--certfile", str(tls.server.cert_file), "--keyfile", str(tls.server.key_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=sakk_env(),
    )  # fmt: skip
    trusted = ssl.create_default_context(cafile=str(tls.ca_file))
    url = f"https://127.0.0.1:{port}"
    try:
        _wait_for(url, trusted, process)
        sign_in = urllib.request.Request(
            f"{url}/api/v1/session", method="POST",
            data=json.dumps({"name": "amal", "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(sign_in, timeout=10, context=trusted) as answer:
            cookie = answer.headers["Set-Cookie"]
        assert cookie.startswith("sakk_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie
        # A client that does not trust the switch's CA is refused the handshake.
        with pytest.raises(urllib.error.URLError) as refused:
            urllib.request.urlopen(f"{url}/login", timeout=10, context=ssl.create_default_context())
        assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
        # Plain HTTP on the TLS port gets no page.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
