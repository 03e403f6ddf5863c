"""What checking the banks' signatures costs the validator, measured on its own.

The validator verifies one Ed25519 signature per PaymentInitiated before reading
anything else. Timing ``KeyRing.verify`` over simulated payments, signed as the benchmark
signs them, gives its CPU per 1,000 payments without instrumenting the consumer; set
beside the validator's whole CPU per 1,000 payments it is the share signatures take.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.events import PAYMENT_INITIATED
from engine.serialization import AvroCodec, SchemaRegistry
from engine.trust.signing import key_rows_as_ring

VERIFY_PAYMENTS = 1_000
MAX_VERIFY_PAYMENTS = 100_000
START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # a fixed day: the same messages each run


class SignatureCheckError(RuntimeError):
    """A benchmark message failed verification: the figure would time the wrong path."""


@dataclass(frozen=True)
class VerificationResult:
    payments: int
    cpu_s: float

    @property
    def cpu_s_per_1000_payments(self) -> float:
        return self.cpu_s * 1000 / self.payments if self.payments else 0.0


def measure_verification(
    reference: Mapping[str, Any],
    schemas_dir: Path,
    topic: str,
    payments: int = VERIFY_PAYMENTS,
    seed: int = 4,
) -> VerificationResult:
    """CPU seconds ``KeyRing.verify`` takes over ``payments`` signed simulated payments."""
    from producers.signing import SIMULATED_KEYS_VALID_FROM
    from tooling.workload.traffic import TrafficSimulator, simulation_signers

    if not 0 < payments <= MAX_VERIFY_PAYMENTS:
        raise ValueError(f"payments={payments} must be in [1, {MAX_VERIFY_PAYMENTS}]")
    codec = AvroCodec(SchemaRegistry.from_dir(schemas_dir))
    signers = simulation_signers(reference, seed)
    ring = key_rows_as_ring(e.as_row() for e in signers.key_entries(SIMULATED_KEYS_VALID_FROM))
    messages = []
    simulator = TrafficSimulator(reference, seed, START, codec=codec)
    for m in simulator.generate(payments * 2):  # the mix's few raw messages are skipped
        if m.payment is None or m.signer != m.payment["payer_bank"]:
            continue
        key, value = (
            PAYMENT_INITIATED.key(m.payment),
            codec.encode(PAYMENT_INITIATED.name, m.payment),
        )
        bank = str(m.payment["payer_bank"])
        messages.append((key, value, signers.headers(bank, topic, key, value)))
        if len(messages) == payments:
            break
    at = datetime.now(UTC)
    started = time.process_time()
    refused = sum(not ring.verify(topic, k, v, h, at).ok for k, v, h in messages)
    cpu_s = time.process_time() - started
    if refused:
        raise SignatureCheckError(f"{refused} of {len(messages)} signed payments refused")
    return VerificationResult(len(messages), cpu_s)
