"""The workload's profiles, one per use, as data: which generator, which mix, which share.

One seeded workload (``tooling.workload``) serves every use; what differs between the
demo, ``sakk simulate``, the benchmark and the chaos harness is written here, not in
their code:

- the ``traffic`` generator (:mod:`tooling.workload.traffic`): a Moroccan day of
  payments from every channel, with the bad cases a real day brings, labelled true by a
  shadow of every payer's funds; its mix is ``uniform`` (:data:`MIX`) or ``skew`` (the
  hot-account test, :data:`SKEW_MIX`), with or without the lifecycle
  (:data:`LIFECYCLE_MIX`);
- the ``chaos`` generator (:mod:`tooling.workload.chaos`): good payments, absurd ones,
  poison and bank retries, and lifecycle flows (:mod:`tooling.workload.flows`) whose
  every outcome is known in advance, ``lifecycle_percent`` of the good payments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TRAFFIC, CHAOS_WORKLOAD = "traffic", "chaos"

# Permille of messages per kind (sums to 1000).
MIX: Mapping[str, int] = {
    "ecommerce_airline": 90,
    "ecommerce": 130,
    "vignette": 100,
    "egov_tax": 40,
    "atm_withdrawal": 150,
    "pos_card": 200,
    "mobile_transfer": 120,
    "interbank_transfer": 65,
    "branch_transfer": 35,
    "unknown_account": 13,
    "insufficient_funds": 14,
    "duplicate_retry": 13,
    "closed_account": 10,
    "over_limit": 10,
    "malformed": 5,
    "forged_payer_bank": 3,
    "unsigned_payment": 2,
}
UNIFORM, SKEW = "uniform", "skew"
HOT_PAYER_BANK = "007"  # Attijariwafa bank, the largest: its customers pay the hot merchant
HOT_MERCHANT = "Jumia Maroc"  # at Banque Populaire: every hot payment crosses banks
HOT_MERCHANT_MAD = (20, 1_000)
HOT_CHANNELS = (("WEB", 60), ("MOBILE", 40))
HOT_SHARE_PERCENT = 70
# Weights per 10,000 messages of the skew profile: hot_merchant 7,000; the other 3,000 are
# the uniform mix's permille times 3, its other e-government share (egov_tax) folded into
# the vignette. The weights sum to 10,000 (a unit test says so).
_SKEW_REST = (100 - HOT_SHARE_PERCENT) * 100 // sum(MIX.values())
SKEW_MIX: Mapping[str, int] = {
    "hot_merchant": HOT_SHARE_PERCENT * 100,
    **{k: _SKEW_REST * w for k, w in MIX.items() if k != "egov_tax"},
    "vignette": _SKEW_REST * (MIX["vignette"] + MIX["egov_tax"]),
}
# The traffic's mixes by name (``sakk simulate --profile``, the benchmark's runs).
MIXES: Mapping[str, Mapping[str, int]] = {UNIFORM: MIX, SKEW: SKEW_MIX}

# Permille of draws per lifecycle kind, and the kind of the mix it takes its weight from.
LIFECYCLE_MIX: Mapping[str, tuple[int, str]] = {
    "card_capture": (40, "pos_card"),  # authorized, captured in full (acquirer)
    "card_partial_capture": (15, "pos_card"),  # fuel or hotel: captured less, the rest freed
    "card_split_capture": (10, "ecommerce"),  # an order shipped in two parcels
    "card_void": (10, "ecommerce"),  # the purchase cancelled before capture
    "card_over_capture": (3, "ecommerce"),  # a capture above the hold (refused), then right
    "card_expiry": (1, "pos_card"),  # never captured: the switch expires the hold
    "airline_refund": (10, "ecommerce_airline"),  # a flight refunded in full
    "airline_partial_refund": (10, "ecommerce_airline"),  # a fare difference refunded
    "misdirected_refund": (2, "ecommerce_airline"),  # asked by the payer's bank: refused
    "transfer_return": (3, "interbank_transfer"),  # the payee's bank returns the credit
}


def lifecycle_mix(mix: Mapping[str, int]) -> dict[str, int]:
    """``mix`` with the lifecycle kinds added, each weighing on the kind it replaces."""
    total = sum(mix.values())
    out = dict(mix)
    for kind, (permille, donor) in LIFECYCLE_MIX.items():
        weight = permille * total // 1000
        out[kind] = weight
        if donor in out:
            out[donor] = max(0, out[donor] - weight)
    return out


@dataclass(frozen=True)
class Profile:
    """What one use of the workload publishes."""

    name: str
    generator: str  # TRAFFIC or CHAOS_WORKLOAD
    mix: str = UNIFORM  # the traffic generator's mix (MIXES)
    lifecycle: bool = False  # authorizations and their steps, refunds, returns
    lifecycle_percent: int = 0  # chaos: the share of good payments that are lifecycle flows


DEMO = Profile("demo", TRAFFIC, UNIFORM, lifecycle=True)
SIMULATE = Profile("simulate", TRAFFIC, UNIFORM, lifecycle=True)  # sakk simulate's defaults
BENCH = Profile("bench", TRAFFIC, UNIFORM)  # the throughput runs and the latency curve
BENCH_SKEW = Profile("bench-skew", TRAFFIC, SKEW)  # the hot-account run
CHAOS = Profile("chaos", CHAOS_WORKLOAD, lifecycle=True, lifecycle_percent=12)
PROFILES: Mapping[str, Profile] = {p.name: p for p in (DEMO, SIMULATE, BENCH, BENCH_SKEW, CHAOS)}
