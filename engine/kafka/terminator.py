"""A TLS terminator (Debian's ``stunnel4``) in front of a plaintext TCP service.

The embedded broker's own TLS does not work as shipped (Tansu 0.6.0 refuses ``--cert``
together with ``--key``, and with ``--cert`` alone still serves plaintext), so the demo
and the tests put stunnel in front of it: stunnel accepts TLS on its own port,
verifies client certificates against the CA when mutual TLS is asked for, and forwards
the decrypted bytes to the broker on loopback. The broker advertises stunnel's port, so
every client reconnects through it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from engine.kafka.exceptions import TlsTerminatorError

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05
BINARIES = ("stunnel4", "stunnel")


def stunnel_binary() -> str | None:
    """Path of the stunnel executable, or None when it is not installed."""
    for name in BINARIES:
        path = shutil.which(name)
        if path:
            return path
    return None


def stunnel_missing() -> str | None:
    """None when stunnel is installed, else the reason (with how to install it)."""
    if stunnel_binary() is None:
        return "stunnel is not installed (Debian: apt-get install stunnel4)"
    return None


@dataclass(frozen=True)
class TerminatorConfig:
    """What stunnel listens on, forwards to, and the files it proves itself with."""

    listen_host: str
    listen_port: int
    target_host: str
    target_port: int
    cert_file: Path
    key_file: Path
    ca_file: Path
    require_client_cert: bool = True

    def render(self, log_file: Path) -> str:
        """The stunnel configuration file: foreground, no pid file, TLS 1.2 at least."""
        lines = [
            "foreground = yes",
            "pid =",
            f"output = {log_file}",
            "debug = notice",
            "syslog = no",
            "[kafka]",
            f"accept = {self.listen_host}:{self.listen_port}",
            f"connect = {self.target_host}:{self.target_port}",
            f"cert = {self.cert_file}",
            f"key = {self.key_file}",
            f"CAfile = {self.ca_file}",
            "sslVersionMin = TLSv1.2",
            # Kafka sends small requests and waits for each answer: no Nagle delay on either side.
            "socket = l:TCP_NODELAY=1",
            "socket = r:TCP_NODELAY=1",
        ]
        if self.require_client_cert:
            lines += ["verifyChain = yes", "requireCert = yes"]
        return "\n".join(lines) + "\n"


class TlsTerminator:
    """One stunnel process, started and stopped by this object."""

    def __init__(self, config: TerminatorConfig, work_dir: Path):
        self.config = config
        self.work_dir = work_dir
        self.log_file = work_dir / "stunnel.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.config.listen_host}:{self.config.listen_port}"

    def start(self) -> TlsTerminator:
        binary = stunnel_binary()
        if binary is None:
            raise TlsTerminatorError(str(stunnel_missing()))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config_file = self.work_dir / "stunnel.conf"
        config_file.write_text(self.config.render(self.log_file), encoding="utf-8")
        with open(self.work_dir / "stunnel.stderr", "ab") as err:
            self._process = subprocess.Popen(
                [binary, str(config_file)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise TlsTerminatorError(
                    f"stunnel exited with code {self._process.returncode} at start; "
                    f"see {self.work_dir / 'stunnel.stderr'} and {self.log_file}"
                )
            if _listening(self.config.listen_host, self.config.listen_port):
                return
            time.sleep(POLL_INTERVAL_S)
        self.stop()
        raise TlsTerminatorError(
            f"stunnel not listening on {self.address} after {START_TIMEOUT_S:.0f}s"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> TlsTerminator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listening(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there (connects and closes at once)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
