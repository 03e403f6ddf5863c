"""A realistic Moroccan reference file: banks, accounts, fee schedule, channel limits.

``python -m tooling.reference_data > reference/morocco.json`` writes the file the
demo loads (``Settings.reference_file``); the same seed always gives the same file,
byte for byte, so the committed copy can be checked against its generator.

Account numbers are 24-digit Moroccan RIBs: 3-digit bank code, 3-digit city code,
16-digit account number, 2-digit key. The key is computed like the French RIB key:
the whole 24-digit number is a multiple of 97, i.e.
``key = 97 - ((51 * bank + 89 * city + 3 * account) % 97)``; 51, 89 and 3 are
10**21, 10**18 and 10**2 modulo 97 for this layout (the French 89/15/3 are the same
powers of ten for the French 5/5/11 layout).

Accounts carry two descriptive fields the ledger loader ignores and the traffic
simulator reads: ``merchant_category_code`` (merchants) and ``egov_service``
(government accounts).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Sequence
from typing import Any

from engine.ledger.models import AccountKind, AccountStatus

CURRENCY = "MAD"
RIB_DIGITS = 24
TGR = "310"  # Trésorerie Générale du Royaume: holds the government's accounts, no customers
MAX_CUSTOMERS_PER_BANK = 10_000
CLOSED_PER_BANK = 2
BLOCKED_PER_BANK = 1
OVERDRAFT_SHARE_PERCENT = 8
MAX_SEED = 10**9

# (code, name, BIC). TGR's BIC is left out rather than guessed.
BANKS: tuple[tuple[str, str, str | None], ...] = (
    ("007", "Attijariwafa bank", "BCMAMAMC"),
    ("011", "Bank of Africa", "BMCEMAMC"),
    ("190", "Banque Populaire", "BCPOMAMC"),
    ("013", "BMCI", "BMCIMAMC"),
    ("022", "Société Générale Maroc", "SGMBMAMC"),
    ("021", "Crédit du Maroc", "CDMAMAMC"),
    ("230", "CIH Bank", "CIHMMAMC"),
    ("225", "Crédit Agricole du Maroc", "CNCAMAMR"),
    (TGR, "Trésorerie Générale du Royaume", None),
)

# RIB city codes, with the share of customers living there (percent).
CITIES: tuple[tuple[str, str, int], ...] = (
    ("780", "Casablanca", 40),
    ("810", "Rabat", 20),
    ("450", "Marrakech", 15),
    ("640", "Fès", 13),
    ("350", "Tanger", 12),
)
CITY_BY_NAME = {name: code for code, name, _ in CITIES}

# (holder, bank, city, MCC, opening balance in MAD): the merchants the simulator pays.
# They also pay salaries in the simulation, hence operating balances that last.
MERCHANTS: tuple[tuple[str, str, str, str, int], ...] = (
    ("Royal Air Maroc", "007", "Casablanca", "4511", 200_000_000),
    ("Air Arabia Maroc", "011", "Casablanca", "4511", 75_000_000),
    ("Jumia Maroc", "190", "Casablanca", "5311", 40_000_000),
    ("Marjane Holding", "007", "Rabat", "5411", 60_000_000),
    ("Afriquia SMDC", "022", "Casablanca", "5541", 50_000_000),
    ("Maroc Telecom", "011", "Rabat", "4814", 100_000_000),
    ("Riad Zitoun, Marrakech", "230", "Marrakech", "7011", 10_000_000),
)

# (holder, egov_service): the government's accounts at the TGR. No opening balance.
GOVERNMENT: tuple[tuple[str, str], ...] = (
    ("DGI — Vignette automobile", "VIGNETTE"),
    ("DGI — Impôts", "IMPOTS"),
)

# (channel, payment type, fixed, basis points, cap): minor units (centimes).
# The vignette is free whatever this says: consumers.fees exempts it by code.
FEE_SCHEDULE: tuple[tuple[str, str, int, int, int | None], ...] = (
    ("WEB", "TRANSFER", 500, 0, None),
    ("MOBILE", "TRANSFER", 200, 0, None),
    ("ATM", "CASH_WITHDRAWAL", 600, 0, None),
    ("BRANCH", "TRANSFER", 1_000, 10, 5_000),
    ("WEB", "PURCHASE", 0, 25, 1_000),
    ("POS", "PURCHASE", 0, 0, None),
    ("EGOV", "EGOV", 0, 100, 5_000),
    ("MOBILE", "PURCHASE", 0, 0, None),
    # A refund of an online purchase costs the merchant 2 MAD (never on a vignette).
    ("WEB", "REFUND", 200, 0, None),
)

CHANNEL_LIMITS_MAD: tuple[tuple[str, int], ...] = (
    ("WEB", 50_000),
    ("MOBILE", 20_000),
    ("ATM", 5_000),
    ("POS", 20_000),
    ("BRANCH", 1_000_000),
    ("EGOV", 100_000),
)
# How long an authorization's hold lives, by channel (others: SAKK_HOLD_EXPIRY_S, 7 days).
HOLD_EXPIRY_S: dict[str, int] = {"WEB": 7 * 24 * 3600, "POS": 3 * 24 * 3600}

# Opening balances of customers, 200 to 80,000 MAD: (low MAD, high MAD, percent).
BALANCE_BANDS: tuple[tuple[int, int, int], ...] = (
    (200, 1_000, 10),
    (1_000, 5_000, 20),
    (5_000, 20_000, 30),
    (20_000, 80_000, 40),
)
OVERDRAFTS_MAD = (1_000, 2_000, 5_000, 10_000)

FIRST_NAMES = (
    "Amina", "Youssef", "Fatima Zahra", "Mohammed", "Khadija", "Hamza", "Salma", "Omar",
    "Imane", "Karim", "Nadia", "Rachid", "Meryem", "Anas", "Hajar", "Mehdi", "Zineb",
    "Ayoub", "Sanae", "Yassine", "Loubna", "Othmane", "Ghita", "Adil", "Houda", "Reda",
    "Soukaina", "Ilyas", "Kawtar", "Brahim", "Nawal", "Said", "Asmae", "Tarik", "Hind",
)  # fmt: skip
LAST_NAMES = (
    "Alaoui", "Benali", "El Amrani", "Berrada", "Tazi", "Bennani", "El Idrissi", "Chraibi",
    "Fassi Fihri", "Lahlou", "Ouazzani", "Benjelloun", "Kettani", "El Mansouri", "Sqalli",
    "Bouazza", "Naciri", "Ait Ouahmane", "Amrani", "Zniber", "El Ouafi", "Hajji", "Slaoui",
    "Bouzidi", "Lamrani", "Cherkaoui", "Benkirane", "Mernissi", "Tahiri", "Ziani",
)  # fmt: skip


def rib_key(bank: str, city: str, account: str) -> str:
    """Two-digit key making the 24-digit RIB a multiple of 97 (01 to 97, like the French key)."""
    if not (len(bank) == 3 and len(city) == 3 and len(account) == 16):
        raise ValueError("a RIB is a 3-digit bank, a 3-digit city and a 16-digit account")
    if not (bank + city + account).isdigit():
        raise ValueError("a RIB has digits only")
    return f"{97 - (int(bank + city + account) * 100) % 97:02d}"


def make_rib(bank: str, city: str, account: str) -> str:
    return bank + city + account + rib_key(bank, city, account)


def is_valid_rib(number: str) -> bool:
    """24 digits whose last two are the key of the first 22."""
    return len(number) == RIB_DIGITS and number.isdigit() and int(number) % 97 == 0


# Each bank's interbank limits in dirhams: (net debit cap, liquidity deposited at the switch).
# Scaled to the simulated traffic, not to a real day's: a 5,000-payment demo moves about
# 11 million dirhams gross and leaves no bank owing more than about 2 million, so every cap
# is several times that (the seeded traffic never meets one: the demo's and the tests'
# counts stay what they are; a cap test or the demo's pressed bank meets them on purpose).
# Ordered by the banks' relative size: the three largest groups (Attijariwafa, Banque
# Populaire, Bank of Africa) highest, the mid-sized banks lower, the smallest lowest. Most
# deposit above their cap, so the cap binds; CIH Bank and Crédit du Maroc deposit less
# than their cap, so their liquidity binds first (refused AM04, not AM23). The Treasury
# mostly receives (e-government payments) and has a middling cap for its refunds.
BANK_LIMITS_MAD: dict[str, tuple[int, int]] = {
    "007": (60_000_000, 75_000_000),
    "190": (50_000_000, 60_000_000),
    "011": (40_000_000, 50_000_000),
    "022": (20_000_000, 25_000_000),
    "225": (15_000_000, 18_000_000),
    "230": (15_000_000, 12_000_000),
    "013": (12_000_000, 15_000_000),
    "021": (10_000_000, 8_000_000),
    TGR: (25_000_000, 30_000_000),
}
CAP_ALERT_PERCENT = 80


def build_reference(seed: int = 7, customers_per_bank: int = 60) -> dict[str, Any]:
    """The reference data as a dict in the format ``engine.ledger.reference`` loads."""
    if not 0 <= seed < MAX_SEED:
        raise ValueError(f"seed={seed} must be in [0, {MAX_SEED})")
    minimum = CLOSED_PER_BANK + BLOCKED_PER_BANK + 1
    if not minimum <= customers_per_bank <= MAX_CUSTOMERS_PER_BANK:
        raise ValueError(
            f"customers_per_bank={customers_per_bank} must be in "
            f"[{minimum}, {MAX_CUSTOMERS_PER_BANK}]"
        )
    rng = random.Random(seed)
    used: set[str] = set()
    accounts: list[dict[str, Any]] = []
    for code, _, _ in BANKS:
        if code != TGR:
            accounts.extend(_customers(rng, code, customers_per_bank, used))
    accounts.extend(_merchants(rng, used))
    accounts.extend(_government(rng, used))
    return {
        "meta": {
            "generator": "tooling.reference_data",
            "seed": seed,
            "customers_per_bank": customers_per_bank,
        },
        "banks": [{"code": c, "name": n, "bic": b, "webhook_url": None} for c, n, b in BANKS],
        "accounts": accounts,
        "fee_schedule": [
            {
                "channel": ch,
                "payment_type": pt,
                "currency": CURRENCY,
                "fixed_minor": fixed,
                "rate_bps": bps,
                "max_minor": cap,
            }
            for ch, pt, fixed, bps, cap in FEE_SCHEDULE
        ],  # fmt: skip
        "channel_limits": [
            {"channel": ch, "currency": CURRENCY, "max_amount_minor": mad * 100}
            | ({"hold_expiry_s": HOLD_EXPIRY_S[ch]} if ch in HOLD_EXPIRY_S else {})
            for ch, mad in CHANNEL_LIMITS_MAD
        ],
        # Each bank's interbank limits (BANK_LIMITS_MAD says why these figures).
        "bank_limits": [
            {
                "bank": code,
                "currency": CURRENCY,
                "net_debit_cap_minor": BANK_LIMITS_MAD[code][0] * 100,
                "alert_percent": CAP_ALERT_PERCENT,
                "liquidity_minor": BANK_LIMITS_MAD[code][1] * 100,
            }
            for code, _, _ in BANKS
        ],  # fmt: skip
    }


def _new_number(rng: random.Random, bank: str, city: str, used: set[str]) -> str:
    for _ in range(100):  # collisions among 10**16 numbers: practically never
        number = make_rib(bank, city, f"{rng.randrange(10**16):016d}")
        if number not in used:
            used.add(number)
            return number
    raise RuntimeError("could not draw a fresh account number in 100 attempts")


def _weighted(rng: random.Random, items: Sequence[Any], weights: Sequence[int]) -> Any:
    return rng.choices(items, weights=weights, k=1)[0]


def _opening_balance_minor(rng: random.Random) -> int:
    low, high, _ = _weighted(rng, BALANCE_BANDS, [b[2] for b in BALANCE_BANDS])
    return rng.randrange(low * 100, high * 100 + 1)


def _customers(rng: random.Random, bank: str, count: int, used: set[str]) -> list[dict[str, Any]]:
    special = rng.sample(range(count), CLOSED_PER_BANK + BLOCKED_PER_BANK)
    status = {i: AccountStatus.CLOSED for i in special[:CLOSED_PER_BANK]}
    status.update({i: AccountStatus.BLOCKED for i in special[CLOSED_PER_BANK:]})
    customers = []
    for i in range(count):
        city = _weighted(rng, [c[0] for c in CITIES], [c[2] for c in CITIES])
        overdraft = 0
        if rng.randrange(100) < OVERDRAFT_SHARE_PERCENT:
            overdraft = rng.choice(OVERDRAFTS_MAD) * 100
        customers.append({
            "number": _new_number(rng, bank, city, used),
            "bank": bank,
            "kind": AccountKind.CUSTOMER.value,
            "holder": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
            "currency": CURRENCY,
            "opening_balance_minor": _opening_balance_minor(rng),
            "overdraft_limit_minor": overdraft,
            "status": status.get(i, AccountStatus.ACTIVE).value,
        })  # fmt: skip
    return customers


def _merchants(rng: random.Random, used: set[str]) -> list[dict[str, Any]]:
    return [
        {
            "number": _new_number(rng, bank, CITY_BY_NAME[city], used),
            "bank": bank,
            "kind": AccountKind.MERCHANT.value,
            "holder": holder,
            "currency": CURRENCY,
            "opening_balance_minor": opening_mad * 100,
            "overdraft_limit_minor": 0,
            "status": AccountStatus.ACTIVE.value,
            "merchant_category_code": mcc,
        }
        for holder, bank, city, mcc, opening_mad in MERCHANTS
    ]


def _government(rng: random.Random, used: set[str]) -> list[dict[str, Any]]:
    return [
        {
            "number": _new_number(rng, TGR, CITY_BY_NAME["Rabat"], used),
            "bank": TGR,
            "kind": AccountKind.GOVERNMENT.value,
            "holder": holder,
            "currency": CURRENCY,
            "opening_balance_minor": 0,
            "overdraft_limit_minor": 0,
            "status": AccountStatus.ACTIVE.value,
            "egov_service": service,
        }
        for holder, service in GOVERNMENT
    ]


def dumps(reference: dict[str, Any]) -> str:
    """JSON with one list entry per line: small, and a regenerated file diffs line by line."""
    parts = []
    for key, value in reference.items():
        if isinstance(value, list):
            rows = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in value)
            parts.append(f"  {json.dumps(key)}: [\n{rows}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tooling.reference_data",
        description="Print a realistic Moroccan reference file (banks, accounts, fees, limits).",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers-per-bank", type=int, default=60)
    args = parser.parse_args(argv)
    try:
        reference = build_reference(args.seed, args.customers_per_bank)
    except ValueError as exc:
        parser.error(str(exc))
    sys.stdout.write(dumps(reference))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
