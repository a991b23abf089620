"""The data contracts: one Great Expectations suite per raw entity, built from a small table of
rules so that the README's table and the suites cannot drift apart.

Each expectation carries `meta.rule`, the stable name a quarantined row lists among the rules it
broke and `ops.dq_results` counts. Importing this module imports GX (seconds): import it lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

from flows.quality.iban_expectation import ExpectColumnValuesToBeValidIban

CURRENCIES = ["GBP", "EUR", "USD"]
MAX_AMOUNT = 1_000_000
SORT_CODE = r"^\d{2}-\d{2}-\d{2}$"
ACCOUNT_NUMBER = r"^\d{8}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
CHANNELS = ["branch", "phone", "web", "app", "email"]


@dataclass(frozen=True)
class Contract:
    entity: str
    keys: tuple[str, ...]
    # Required columns and their type family: one missing or of another family fails the batch.
    required: dict[str, str]
    expectations: tuple[gxe.Expectation, ...]
    # Derived columns some rules need (never loaded): name -> function of the frame.
    derived: dict[str, Callable[[pd.DataFrame], pd.Series]] = field(default_factory=dict)

    def columns_used(self) -> set[str]:
        """The columns any rule, key or drift check reads: the only ones worth parsing."""
        used = set(self.keys) | set(self.required)
        for expectation in self.expectations:
            used.update(c.strip() for c in describe_columns(expectation).split(",") if c.strip())
        return used - set(self.derived)

    def rules(self) -> list[tuple[str, str, str]]:
        """(rule, column(s), expectation type) for documentation and reports."""
        return [
            (e.meta["rule"], describe_columns(e), e.expectation_type) for e in self.expectations
        ]


def describe_columns(expectation: gxe.Expectation) -> str:
    if hasattr(expectation, "column_A"):
        return f"{expectation.column_A}, {expectation.column_B}"
    return getattr(expectation, "column", "")


def not_null(column: str) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToNotBeNull(column=column, meta={"rule": f"{column}_missing"})


def in_set(column: str, values: list[str], rule: str | None = None) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeInSet(
        column=column, value_set=values, meta={"rule": rule or f"{column}_unknown"}
    )


def matches(column: str, regex: str, rule: str) -> gxe.Expectation:
    return gxe.ExpectColumnValuesToMatchRegex(column=column, regex=regex, meta={"rule": rule})


def amount_in_range(column: str = "amount") -> gxe.Expectation:
    return gxe.ExpectColumnValuesToBeBetween(
        column=column,
        min_value=0,
        max_value=MAX_AMOUNT,
        strict_min=True,
        meta={"rule": f"{column}_out_of_range"},
    )


def updated_on(frame: pd.DataFrame) -> pd.Series:
    """The date the source recorded the row: a booking after it is a booking in the future."""
    return (
        pd.to_datetime(frame["updated_at"], utc=True, errors="coerce", format="ISO8601")
        .dt.tz_localize(None)
        .dt.normalize()
    )


def booking_on(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["booking_date"], errors="coerce", format="ISO8601")


CONTRACTS: dict[str, Contract] = {
    c.entity: c
    for c in (
        Contract(
            "products",
            keys=("product_id",),
            required={
                "product_id": "text",
                "name": "text",
                "category": "text",
                "updated_at": "timestamp",
            },
            expectations=(not_null("product_id"), not_null("name")),
        ),
        Contract(
            "customers",
            keys=("customer_id",),
            required={
                "customer_id": "integer",
                "first_name": "text",
                "last_name": "text",
                "email": "text",
                "updated_at": "timestamp",
            },
            expectations=(
                not_null("customer_id"),
                not_null("first_name"),
                not_null("last_name"),
                matches("email", EMAIL, "email_format"),
            ),
        ),
        Contract(
            "accounts",
            keys=("account_id",),
            required={
                "account_id": "integer",
                "sort_code": "text",
                "account_number": "text",
                "iban": "text",
                "currency": "text",
                "status": "text",
                "updated_at": "timestamp",
            },
            expectations=(
                not_null("account_id"),
                not_null("sort_code"),
                matches("sort_code", SORT_CODE, "sort_code_format"),
                not_null("account_number"),
                matches("account_number", ACCOUNT_NUMBER, "account_number_format"),
                not_null("iban"),
                ExpectColumnValuesToBeValidIban(column="iban", meta={"rule": "iban_invalid"}),
                in_set("currency", CURRENCIES),
                in_set("status", ["open", "dormant", "closed"]),
            ),
        ),
        Contract(
            "account_holders",
            keys=("account_id", "customer_id", "valid_from"),
            required={
                "account_id": "integer",
                "customer_id": "integer",
                "valid_from": "date",
                "updated_at": "timestamp",
            },
            expectations=(
                not_null("account_id"),
                not_null("customer_id"),
                not_null("valid_from"),
                in_set("holder_role", ["primary", "joint"]),
            ),
        ),
        Contract(
            "transactions",
            keys=("transaction_id",),
            required={
                "transaction_id": "integer",
                "account_id": "integer",
                "amount": "numeric",
                "currency": "text",
                "direction": "text",
                "status": "text",
                "booking_date": "date",
                "updated_at": "timestamp",
            },
            expectations=(
                not_null("transaction_id"),
                not_null("account_id"),
                not_null("amount"),
                amount_in_range(),
                in_set("currency", CURRENCIES),
                in_set("direction", ["credit", "debit"]),
                in_set("status", ["pending", "booked"]),
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                    column_A="_updated_on",
                    column_B="_booking_on",
                    or_equal=True,
                    ignore_row_if="either_value_is_missing",
                    meta={"rule": "booking_date_in_future"},
                ),
            ),
            derived={"_updated_on": updated_on, "_booking_on": booking_on},
        ),
        Contract(
            "interactions",
            keys=("interaction_id",),
            required={
                "interaction_id": "integer",
                "customer_id": "integer",
                "channel": "text",
                "interaction_type": "text",
                "sentiment": "numeric",
                "occurred_at": "timestamp",
            },
            expectations=(
                not_null("interaction_id"),
                not_null("customer_id"),
                not_null("occurred_at"),
                in_set("channel", CHANNELS),
                in_set("interaction_type", ["complaint", "enquiry", "service", "sales"]),
                gxe.ExpectColumnValuesToBeBetween(
                    column="sentiment",
                    min_value=-1,
                    max_value=1,
                    meta={"rule": "sentiment_out_of_range"},
                ),
            ),
        ),
        Contract(
            "opportunities",
            keys=("opportunity_id", "updated_at"),
            required={
                "opportunity_id": "integer",
                "customer_id": "integer",
                "product_code": "text",
                "stage": "text",
                "amount": "numeric",
                "probability": "numeric",
                "updated_at": "timestamp",
            },
            expectations=(
                not_null("opportunity_id"),
                not_null("customer_id"),
                in_set("stage", ["prospect", "qualified", "proposal", "won", "lost"]),
                amount_in_range(),
                gxe.ExpectColumnValuesToBeBetween(
                    column="probability",
                    min_value=0,
                    max_value=1,
                    meta={"rule": "probability_out_of_range"},
                ),
            ),
        ),
        Contract(
            "orders",
            keys=("order_id", "updated_at"),
            required={
                "order_id": "integer",
                "customer_id": "integer",
                "product_id": "text",
                "channel": "text",
                "status": "text",
                "amount": "numeric",
                "updated_at": "timestamp",
            },
            expectations=(
                not_null("order_id"),
                not_null("customer_id"),
                in_set("channel", CHANNELS),
                in_set("status", ["placed", "approved", "rejected", "fulfilled", "cancelled"]),
                amount_in_range(),
            ),
        ),
    )
}


def contract_for(entity: str) -> Contract:
    try:
        return CONTRACTS[entity]
    except KeyError:
        raise LookupError(
            f"no data contract for entity {entity!r}; known: {sorted(CONTRACTS)}"
        ) from None


def build_suite(contract: Contract) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name=f"raw.{contract.entity}")
    for expectation in contract.expectations:
        suite.add_expectation(expectation.copy())
    return suite
