"""The data contracts: one table of rules per raw entity, and the Great Expectations suite each
becomes, so that GX, the SQL that judges database batches, this README's table and
`ops.dq_results` all use the same rules under the same names.

A rule is plain data (no GX import: the database path never needs GX, and it costs seconds and
~230 MB); `Rule.to_gx()` gives the GX expectation, with the rule's name in `meta.rule`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import great_expectations as gx
    import pandas as pd

CURRENCIES = ("GBP", "EUR", "USD")
MAX_AMOUNT = 1_000_000
SORT_CODE = r"^\d{2}-\d{2}-\d{2}$"
ACCOUNT_NUMBER = r"^\d{8}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
CHANNELS = ("branch", "phone", "web", "app", "email")
# Where a core-bank transaction was made, and the merchant category of a card payment
# (sql/source/corebank.sql says what each means).
TRANSACTION_CHANNELS = ("branch", "atm", "online", "mobile", "card", "system")
MERCHANT_CATEGORIES = ("groceries", "restaurants", "travel", "fuel", "retail", "health")


@dataclass(frozen=True)
class Rule:
    """One expectation: `kind` names the GX expectation it becomes (see `to_gx`)."""

    name: str
    kind: str  # not_null | in_set | match | between | not_after | iban | unique
    column: str
    values: tuple[Any, ...] = ()
    regex: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    strict_min: bool = False
    strict_max: bool = False
    other_column: str | None = None  # not_after: `column` must not be after `other_column`
    key: tuple[str, ...] = ()  # unique: the columns that together must not repeat in a batch

    @property
    def columns(self) -> tuple[str, ...]:
        if self.key:
            return self.key
        return (self.column, self.other_column) if self.other_column else (self.column,)

    def to_gx(self):  # type: ignore[no-untyped-def]
        """The GX expectation this rule is (GX semantics: NULL passes all but not_null)."""
        import great_expectations.expectations as gxe

        meta = {"rule": self.name}
        if self.kind == "not_null":
            return gxe.ExpectColumnValuesToNotBeNull(column=self.column, meta=meta)
        if self.kind == "in_set":
            return gxe.ExpectColumnValuesToBeInSet(
                column=self.column, value_set=list(self.values), meta=meta
            )
        if self.kind == "match":
            return gxe.ExpectColumnValuesToMatchRegex(
                column=self.column, regex=self.regex, meta=meta
            )
        if self.kind == "between":
            return gxe.ExpectColumnValuesToBeBetween(
                column=self.column,
                min_value=self.min_value,
                max_value=self.max_value,
                strict_min=self.strict_min,
                strict_max=self.strict_max,
                meta=meta,
            )
        if self.kind == "not_after":
            return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A=self.other_column,
                column_B=self.column,
                or_equal=True,
                ignore_row_if="either_value_is_missing",
                meta=meta,
            )
        if self.kind == "iban":
            from flows.quality.iban_expectation import ExpectColumnValuesToBeValidIban

            return ExpectColumnValuesToBeValidIban(column=self.column, meta=meta)
        if self.kind == "unique" and len(self.key) == 1:
            return gxe.ExpectColumnValuesToBeUnique(column=self.key[0], meta=meta)
        if self.kind == "unique":
            # Every copy breaks the rule: which of two rows with one key is right, nobody knows.
            return gxe.ExpectCompoundColumnsToBeUnique(
                column_list=list(self.key), ignore_row_if="any_value_is_missing", meta=meta
            )
        raise ValueError(f"rule {self.name}: unknown kind {self.kind!r}")


@dataclass(frozen=True)
class Contract:
    entity: str
    keys: tuple[str, ...]
    # Required columns and their type family: one missing or of another family fails the batch.
    required: dict[str, str]
    checks: tuple[Rule, ...]
    # Typed columns a row may lack (feeds): raw types them, and their dates are checked too.
    optional: dict[str, str] = field(default_factory=dict)
    # Derived columns some rules need (never loaded): in pandas for files, in SQL for tables.
    # Both are given the moment of judging (`now`, `{now}` in the SQL), for rules about the clock.
    derived: dict[str, Callable[[pd.DataFrame, datetime], pd.Series]] = field(default_factory=dict)
    derived_sql: dict[str, str] = field(default_factory=dict)
    # Timestamps the source stamps itself: later than now plus the tolerance is implausible.
    stamped: tuple[str, ...] = ("updated_at",)

    @property
    def typed(self) -> dict[str, str]:
        """Every column the contract types: the required ones, then the optional ones."""
        return {**self.required, **self.optional}

    def rules(self) -> list[tuple[str, str, str]]:
        """(rule, column(s), kind) for documentation and reports."""
        return [(r.name, ", ".join(r.columns), r.kind) for r in self.checks]


def not_null(column: str) -> Rule:
    return Rule(f"{column}_missing", "not_null", column)


def in_set(column: str, values: tuple[str, ...]) -> Rule:
    return Rule(f"{column}_unknown", "in_set", column, values=values)


def matches(column: str, regex: str, name: str) -> Rule:
    return Rule(name, "match", column, regex=regex)


def between(column: str, low: float, high: float, name: str, strict_min: bool = False) -> Rule:
    return Rule(name, "between", column, min_value=low, max_value=high, strict_min=strict_min)


def amount_in_range(column: str = "amount") -> Rule:
    return between(column, 0, MAX_AMOUNT, f"{column}_out_of_range", strict_min=True)


def unique_key(*columns: str) -> Rule:
    """No two rows of one batch share this key (a batch is one version of each key)."""
    return Rule("key_duplicated", "unique", columns[0], key=columns)


FUTURE_SUFFIX = "_seconds_past_bound"
EARLY_SUFFIX = "_seconds_from_earliest"
# The epoch in SQL, robust to every value Postgres accepts: extract() gives Infinity for
# 'infinity' (PostgreSQL 14+), where subtracting an infinite timestamp raises an error.
EPOCH_SQL = {
    "timestamp": "extract(epoch from {column}::timestamptz)",
    "date": "extract(epoch from {column}::date)",
}


def seconds_past_bound(values: pd.Series, now: datetime) -> pd.Series:
    """Seconds by which each timestamp lies beyond now + FUTURE_TOLERANCE_SECONDS (NaN if none),
    in any year Postgres takes: 9999-12-31 is still late, as it is to Postgres."""
    from flows.quality.timestamps import epoch_seconds
    from flows.settings import get_settings

    bound = now.timestamp() + get_settings().future_tolerance_seconds
    return epoch_seconds(values) - bound


def seconds_from_earliest(values: pd.Series) -> pd.Series:
    """Seconds from EARLIEST_PLAUSIBLE_DATE (midnight UTC) to each value: negative is too early."""
    from flows.quality.timestamps import epoch_seconds
    from flows.settings import get_settings

    return epoch_seconds(values) - earliest_epoch(get_settings().earliest_plausible_date)


def earliest_epoch(day: date) -> float:
    return datetime.combine(day, time(), UTC).timestamp()


def stamped_in_future(column: str) -> tuple[Rule, dict, dict]:
    """The rule, derived column and its SQL for "stamped later than now plus the tolerance".

    A row from the far future must never be trusted as a watermark; the tolerance absorbs clocks
    a few minutes apart. The bound is taken when the batch is judged (the source's clock for a
    database table), so that extraction and judging agree on it.
    """
    derived = f"_{column}{FUTURE_SUFFIX}"
    rule = Rule(f"{column}_in_future", "between", derived, max_value=0)
    epoch = EPOCH_SQL["timestamp"].format(column=column)
    return (
        rule,
        {derived: lambda frame, now: seconds_past_bound(frame[column], now)},
        {derived: f"{epoch} - extract(epoch from {{bound}})"},
    )


def dated_too_early(column: str, family: str) -> tuple[Rule, dict, dict]:
    """The rule, derived column and its SQL for "dated before EARLIEST_PLAUSIBLE_DATE".

    A booking dated 0001-01-01 or a feed stamped in year 1 is a broken value, not history: no
    bank system predates the bound. Dates and timestamps are compared with its midnight in UTC.
    """
    derived = f"_{column}{EARLY_SUFFIX}"
    rule = Rule(f"{column}_too_early", "between", derived, min_value=0)
    epoch = EPOCH_SQL[family].format(column=column)
    return (
        rule,
        {derived: lambda frame, now: seconds_from_earliest(frame[column])},
        {derived: f"{epoch} - ({{earliest}})"},
    )


def updated_on(frame: pd.DataFrame, now: datetime) -> pd.Series:
    """The day (in the bank's zone) the source recorded the row: a booking after it is a booking
    in the future."""
    from flows.quality.timestamps import day_number
    from flows.settings import get_settings

    return day_number(frame["updated_at"], get_settings().bank_timezone)


def booking_on(frame: pd.DataFrame, now: datetime) -> pd.Series:
    from flows.quality.timestamps import day_number

    return day_number(frame["booking_date"])


def with_batch_rules(contract: Contract) -> Contract:
    """The contract plus the rules every batch obeys: one version per key, every row stamped,
    no stamp from the far future, and no date or timestamp before the earliest plausible date."""
    checks = [*contract.checks, unique_key(*contract.keys)]
    derived, derived_sql = dict(contract.derived), dict(contract.derived_sql)
    for column in contract.stamped:
        if not any(r.kind == "not_null" and r.column == column for r in checks):
            checks.append(not_null(column))
    dated = {c: f for c, f in contract.typed.items() if f in EPOCH_SQL}
    # Stamped columns first: their rules keep the order they have always had in reports.
    timestamps = [*contract.stamped, *(c for c, f in dated.items() if f == "timestamp")]
    for column in dict.fromkeys(timestamps):
        rule, pandas_column, sql_column = stamped_in_future(column)
        checks.append(rule)
        derived.update(pandas_column)
        derived_sql.update(sql_column)
    for column, family in dated.items():
        rule, pandas_column, sql_column = dated_too_early(column, family)
        checks.append(rule)
        derived.update(pandas_column)
        derived_sql.update(sql_column)
    return replace(contract, checks=tuple(checks), derived=derived, derived_sql=derived_sql)


CONTRACTS: dict[str, Contract] = {
    c.entity: c
    for c in map(
        with_batch_rules,
        (
            Contract(
                "products",
                keys=("product_id",),
                required={
                    "product_id": "text",
                    "name": "text",
                    "category": "text",
                    "updated_at": "timestamp",
                },
                checks=(not_null("product_id"), not_null("name")),
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
                checks=(
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
                checks=(
                    not_null("account_id"),
                    not_null("sort_code"),
                    matches("sort_code", SORT_CODE, "sort_code_format"),
                    not_null("account_number"),
                    matches("account_number", ACCOUNT_NUMBER, "account_number_format"),
                    not_null("iban"),
                    Rule("iban_invalid", "iban", "iban"),
                    in_set("currency", CURRENCIES),
                    in_set(
                        "status",
                        (
                            "open",
                            "dormant",
                            "closed",
                        ),
                    ),
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
                checks=(
                    not_null("account_id"),
                    not_null("customer_id"),
                    not_null("valid_from"),
                    in_set(
                        "holder_role",
                        (
                            "primary",
                            "joint",
                        ),
                    ),
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
                    # What gold's balances and AML alerts read: a source without them fails.
                    "channel": "text",
                    "merchant_category": "text",
                    "counterparty_account_id": "integer",
                    "booked_at": "timestamp",
                },
                checks=(
                    not_null("transaction_id"),
                    not_null("account_id"),
                    not_null("amount"),
                    amount_in_range(),
                    in_set("currency", CURRENCIES),
                    in_set("channel", TRANSACTION_CHANNELS),
                    in_set("merchant_category", MERCHANT_CATEGORIES),
                    in_set(
                        "direction",
                        (
                            "credit",
                            "debit",
                        ),
                    ),
                    in_set(
                        "status",
                        (
                            "pending",
                            "booked",
                        ),
                    ),
                    # Booked on a date after the source recorded the booking: in the future.
                    Rule(
                        "booking_date_in_future",
                        "not_after",
                        "_booking_on",
                        other_column="_updated_on",
                    ),
                ),
                derived={"_updated_on": updated_on, "_booking_on": booking_on},
                derived_sql={
                    "_updated_on": "(updated_at at time zone {zone})::date",
                    "_booking_on": "booking_date",
                },
            ),
            Contract(
                # The source's ledger: one row per account, a new version whenever it books.
                "account_balances",
                keys=("account_id",),
                required={
                    "account_id": "integer",
                    "currency": "text",
                    "opening_balance": "numeric",
                    "balance": "numeric",
                    "booked_transactions": "integer",
                    "updated_at": "timestamp",
                },
                checks=(
                    not_null("account_id"),
                    in_set("currency", CURRENCIES),
                    not_null("opening_balance"),
                    not_null("balance"),
                    not_null("booked_transactions"),
                    # A balance is signed (overdrawn, owed): only its count has a floor.
                    Rule(
                        "booked_transactions_negative",
                        "between",
                        "booked_transactions",
                        min_value=0,
                    ),
                ),
            ),
            Contract(
                "interactions",
                keys=("interaction_id",),
                stamped=("occurred_at",),
                required={
                    "interaction_id": "integer",
                    "customer_id": "integer",
                    "channel": "text",
                    "interaction_type": "text",
                    "sentiment": "numeric",
                    "occurred_at": "timestamp",
                },
                checks=(
                    not_null("interaction_id"),
                    not_null("customer_id"),
                    not_null("occurred_at"),
                    in_set("channel", CHANNELS),
                    in_set(
                        "interaction_type",
                        (
                            "complaint",
                            "enquiry",
                            "service",
                            "sales",
                        ),
                    ),
                    between("sentiment", -1, 1, "sentiment_out_of_range"),
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
                optional={"created_at": "timestamp"},
                checks=(
                    not_null("opportunity_id"),
                    not_null("customer_id"),
                    in_set(
                        "stage",
                        (
                            "prospect",
                            "qualified",
                            "proposal",
                            "won",
                            "lost",
                        ),
                    ),
                    amount_in_range(),
                    between("probability", 0, 1, "probability_out_of_range"),
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
                optional={"ordered_at": "timestamp"},
                checks=(
                    not_null("order_id"),
                    not_null("customer_id"),
                    in_set("channel", CHANNELS),
                    in_set(
                        "status",
                        (
                            "placed",
                            "approved",
                            "rejected",
                            "fulfilled",
                            "cancelled",
                        ),
                    ),
                    amount_in_range(),
                ),
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
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=f"raw.{contract.entity}")
    for rule in contract.checks:
        suite.add_expectation(rule.to_gx())
    return suite
