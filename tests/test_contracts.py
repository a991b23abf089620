"""The contracts themselves: each rule catches what it names, and the README lists every rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from flows.quality.contracts import CONTRACTS
from flows.quality.validate import ContractValidator

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def validator(tmp_path_factory) -> ContractValidator:
    return ContractValidator(tmp_path_factory.mktemp("gx"))


def test_readme_documents_every_rule():
    text = README.read_text()
    missing = [
        f"{c.entity}: {rule}"
        for c in CONTRACTS.values()
        for rule, _, _ in c.rules()
        if f"`{rule}`" not in text
    ]
    assert not missing


def test_account_rules(validator):
    good = {
        "account_id": "1",
        "sort_code": "20-00-01",
        "account_number": "12345678",
        "iban": "GB29NWBK60161331926819",
        "currency": "GBP",
        "status": "open",
        "updated_at": "2026-01-01 10:00:00+00",
    }
    frame = pd.DataFrame(
        [
            good,
            {**good, "sort_code": "20-0001"},
            {**good, "account_number": "1234567"},
            {**good, "iban": "GB28NWBK60161331926819"},  # checksum off by one
            {**good, "currency": "XYZ", "status": "frozen"},
            {**good, "iban": None},
        ]
    )
    verdict = validator.validate("accounts", frame)
    assert verdict.broken == {
        1: ["sort_code_format"],
        2: ["account_number_format"],
        3: ["iban_invalid"],
        4: ["currency_unknown", "status_unknown"],
        5: ["iban_missing"],
    }
    assert verdict.stats["iban_invalid"].evaluated == 6
    assert verdict.stats["iban_invalid"].failed == 1


def test_transaction_rules(validator):
    good = {
        "transaction_id": "1",
        "account_id": "7",
        "amount": "10.50",
        "currency": "GBP",
        "direction": "debit",
        "status": "booked",
        "booking_date": "2026-01-02",
        "updated_at": "2026-01-02 09:00:00+00",
    }
    frame = pd.DataFrame(
        [
            good,
            {**good, "amount": "0"},
            {**good, "amount": "1000000.01"},
            {**good, "amount": "ten"},
            {**good, "booking_date": "2026-03-01"},
            {**good, "status": "pending", "booking_date": None},
        ]
    )
    verdict = validator.validate("transactions", frame)
    assert verdict.broken == {
        1: ["amount_out_of_range"],
        2: ["amount_out_of_range"],
        3: ["amount_not_a_number", "amount_missing"],
        4: ["booking_date_in_future"],
    }
