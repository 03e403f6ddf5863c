"""Consumers as separate operating-system processes: start, stop, kill, restart.

The demo, the benchmark and the fault-injection harness all run the stages
this way, as an operator would: one process per consumer instance. Which stages
there are and the command that runs one come from the topology handed in
(engine.topology): the supervisor names none itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import Settings
from engine.topology import Topology

STOP_TIMEOUT_S = 30.0


@contextmanager
def _sigterm_blocked() -> Iterator[None]:
    """Block SIGTERM in this thread while a child is forked, so the child starts blocked."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment that makes a child process use exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAKK_")}
    env["SAKK_KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    env["SAKK_DATABASE_URL"] = settings.ledger_url
    for name in settings.redacted():
        if name in ("kafka_bootstrap_servers", "database_url"):
            continue
        value = getattr(settings, name)
        env[f"SAKK_{name.upper()}"] = "" if value is None else str(value)  # "" reads back as None
    return env


@dataclass
class ConsumerProcess:
    stage: str
    instance: int
    settings: Settings
    log_path: Path
    command: Sequence[str]  # what runs the stage (Topology.command)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def label(self) -> str:
        return f"{self.stage}-{self.instance}"

    def start(self, metrics_port: int = 0) -> None:
        env = settings_env(self.settings)
        env["SAKK_METRICS_PORT"] = str(metrics_port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log, _sigterm_blocked():
            # Born with SIGTERM blocked (the mask survives exec): a stop sent while the
            # interpreter starts waits until engine.startup is ready to exit 0 on it.
            self.process = subprocess.Popen(
                list(self.command),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the crash at any instant the exactly-once design must survive."""
        if self.alive():
            assert self.process is not None
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S, signalled: bool = False) -> int | None:
        """SIGTERM (unless already ``signalled``), then SIGKILL after ``timeout_s``; the exit code.

        One SIGTERM only: a second one reaching a process that has stopped cleanly and is
        finalizing finds the default action restored by Python, and kills it (exit -15).
        """
        if self.process is None:
            return None
        if self.alive():
            if not signalled:
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        return self.process.returncode


@dataclass
class Fleet:
    """All consumer processes of one run."""

    settings: Settings
    log_dir: Path
    topology: Topology
    members: list[ConsumerProcess] = field(default_factory=list)

    def start(self, stage: str, instances: int = 1, metrics_port: int = 0) -> list[ConsumerProcess]:
        command = self.topology.command(stage)  # an unknown stage: ValueError, nothing started
        started = []
        for i in range(instances):
            member = ConsumerProcess(
                stage,
                len(self.of(stage)) + 1,
                self.settings,
                self.log_dir / f"{stage}-{len(self.of(stage)) + 1}.log",
                command,
            )
            member.start(metrics_port + i if metrics_port else 0)
            self.members.append(member)
            started.append(member)
        return started

    def of(self, stage: str) -> list[ConsumerProcess]:
        return [m for m in self.members if m.stage == stage]

    def check_alive(self) -> list[str]:
        """Labels of members that exited on their own."""
        return [m.label for m in self.members if m.process is not None and not m.alive()]

    def stop(self) -> dict[str, int | None]:
        signalled = set()
        for m in self.members:
            if m.alive() and m.process is not None:
                m.process.send_signal(signal.SIGTERM)
                signalled.add(m.label)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        codes = {}
        for m in self.members:
            codes[m.label] = m.stop(max(deadline - time.monotonic(), 0.1), m.label in signalled)
        return codes
