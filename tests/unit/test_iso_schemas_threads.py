"""ISO 20022 bodies built by many delivery threads at once, from a process's cold start."""

from __future__ import annotations

import subprocess
import sys
import textwrap

THREADS = 16
BUILDS_PER_THREAD = 8
SUBPROCESS_TIMEOUT_S = 120

_COLD_START = textwrap.dedent(
    f"""
    import threading
    from datetime import UTC, datetime

    from engine.iso.notices import iso_notification

    payload = {{
        "payment_id": "007:0f8fad5b-d9cb-469f-a165-70867728950e", "bank_reference": "E2E-1",
        "payer_bank": "007", "payee_bank": "011", "amount_minor": 4_000, "currency": "MAD",
        "settlement_window": "2026-11-26",
    }}
    bics = {{"007": "BCMAMAMC", "011": "BMCEMAMC"}}
    start, errors, built = threading.Barrier({THREADS}), [], []

    def deliver(n: int) -> None:
        start.wait()  # every thread asks for the first schema at the same moment
        for i in range({BUILDS_PER_THREAD}):
            outcome = ("SETTLED", "REJECTED", "RETURN")[(n + i) % 3]
            nid = f"3f2504e0-4f89-41d3-9a0c-{{n:04d}}{{i:08d}}"
            told = payload | {{"step": "RETURN"}} if outcome == "RETURN" else payload
            try:
                built.append(iso_notification(nid, outcome, told, "007", datetime.now(UTC), bics))
            except Exception as exc:
                errors.append(f"{{type(exc).__name__}}: {{exc}}")

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range({THREADS})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(built) == {THREADS * BUILDS_PER_THREAD}, len(built)
    print("built", len(built))
    """
)


def test_sixteen_threads_build_pacs002_and_pacs004_bodies_from_a_cold_start() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _COLD_START],
        capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2_000:]
    assert done.stdout.strip() == f"built {THREADS * BUILDS_PER_THREAD}"
