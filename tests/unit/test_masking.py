"""Personal data masked before an operator reads it: accounts to 4 digits, names hidden."""

from __future__ import annotations

from engine.masking import mask_account, mask_key, mask_record, mask_text


def test_account_numbers_keep_only_their_last_four_digits() -> None:
    assert mask_account("007780000000000000000111") == "****0111"
    assert mask_account("123") == "****"  # too short to show any of it


def test_account_like_digit_runs_in_free_text_are_masked_and_short_numbers_stay() -> None:
    text = "Key (payer_account)=(007780000000000000000111) exists; offset 4521, 2026-11-26"
    assert mask_text(text) == "Key (payer_account)=(****0111) exists; offset 4521, 2026-11-26"


def test_record_masks_account_fields_hides_names_and_keeps_the_rest() -> None:
    record = {
        "payer_account": "007780000000000000000111",
        "payee_account": "011810000000000000000333",
        "holder": "Amina El Idrissi",
        "amount_minor": 10_000,
        "bank_reference": "ATW-2026-000042",
        "merchant_category_code": None,
    }
    assert mask_record(record) == {
        "payer_account": "****0111",
        "payee_account": "****0333",
        "holder": "****",
        "amount_minor": 10_000,
        "bank_reference": "ATW-2026-000042",
        "merchant_category_code": None,
    }


def test_keys_are_masked_like_text_and_binary_keys_shown_by_size() -> None:
    assert mask_key(b"007780000000000000000111") == "****0111"
    assert mask_key(b"garbage") == "garbage"
    assert mask_key(b"\xff\x00\x01") == "<3 bytes>"
    assert mask_key(None) == ""
