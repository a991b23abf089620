"""The contracts themselves: each rule catches what it names, the SQL that judges database
batches agrees with GX row for row, and the README lists every rule."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from flows.quality.contracts import CONTRACTS, contract_for
from flows.quality.sql_contract import prepare_iban_check, rules_broken
from flows.quality.validate import ContractValidator

README = Path(__file__).resolve().parent.parent / "README.md"
# The moment of judging, for the rules about the clock (FUTURE_TOLERANCE_SECONDS = 900).
NOW = datetime(2026, 6, 1, tzinfo=UTC)


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
    rows = [
        good,
        {**good, "sort_code": "20-0001"},
        {**good, "account_number": "1234567"},
        {**good, "iban": "GB28NWBK60161331926819"},  # checksum off by one
        {**good, "currency": "XYZ", "status": "frozen"},
        {**good, "iban": None},
    ]
    frame = pd.DataFrame([{**row, "account_id": str(i)} for i, row in enumerate(rows)])
    verdict = validator.validate("accounts", frame, now=NOW)
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
        "channel": "card",
        "merchant_category": "groceries",
        "counterparty_account_id": None,
        "booked_at": "2026-01-02 09:00:00+00",
    }
    rows = [
        good,
        {**good, "amount": "0"},
        {**good, "amount": "1000000.01"},
        {**good, "amount": "ten"},
        {**good, "booking_date": "2026-03-01"},
        {**good, "status": "pending", "booking_date": None},
        {**good, "updated_at": "2026-06-01 00:10:00+00"},  # 10 minutes ahead: within tolerance
        {**good, "updated_at": "2026-06-01 00:20:00+00", "booking_date": None},
        {**good, "updated_at": "10000-01-01 00:00:00+00", "booking_date": None},
        {**good, "channel": "fax", "merchant_category": "casino"},
        {**good, "booked_at": "2026-06-01 00:20:00+00"},
        {**good, "channel": None, "merchant_category": None, "booked_at": None},  # pending, say
    ]
    frame = pd.DataFrame([{**row, "transaction_id": str(i)} for i, row in enumerate(rows)])
    frame.loc[len(frame)] = {**good, "transaction_id": "0"}  # a second row with key 0
    verdict = validator.validate("transactions", frame, now=NOW)
    assert verdict.broken == {
        0: ["key_duplicated"],
        1: ["amount_out_of_range"],
        2: ["amount_out_of_range"],
        3: ["amount_not_a_number", "amount_missing"],
        4: ["booking_date_in_future"],
        7: ["updated_at_in_future"],
        8: ["updated_at_in_future"],
        9: ["channel_unknown", "merchant_category_unknown"],
        10: ["booked_at_in_future"],
        12: ["key_duplicated"],
    }


# Row values for the differential test: each column draws from edge cases of its rules.
TRANSACTION_VALUES = {
    "transaction_id": st.sampled_from(["1", "2", None]),
    "account_id": st.sampled_from(["7", None]),
    "amount": st.sampled_from(["-1", "0", "0.01", "10.50", "1000000", "1000000.01", None]),
    "currency": st.sampled_from(["GBP", "EUR", "XYZ", "gbp", None]),
    "direction": st.sampled_from(["credit", "debit", "sideways", None]),
    "status": st.sampled_from(["pending", "booked", "Booked", None]),
    # Dates before EARLIEST_PLAUSIBLE_DATE (1900-01-01) are implausible, however far, and so are
    # the ones past pandas' range (1677-2262) that Postgres still takes.
    "booking_date": st.sampled_from(
        [
            "2026-01-01",
            "2026-01-02",
            "2026-01-03",
            "0001-01-01",
            "1899-12-31",
            "1900-01-01",
            "10000-01-01",
            "infinity",
            "-infinity",
            None,
        ]
    ),
    "channel": st.sampled_from(["card", "atm", "system", "ATM", "fax", None]),
    "merchant_category": st.sampled_from(["groceries", "health", "casino", None]),
    "counterparty_account_id": st.sampled_from(["10000001", None]),
    "booked_at": st.sampled_from(
        ["2026-01-02 09:00:00+00", "2026-06-01 00:15:01+00", "0001-01-01 00:00:00+00", None]
    ),
    # 23:30 at UTC-5 is the next day in UTC: the rule compares dates in the bank's zone (UTC).
    # Stamps past now (NOW) plus the tolerance are implausible, however far.
    "updated_at": st.sampled_from(
        [
            "2026-01-02 09:00:00+00",
            "2026-01-02 23:30:00-05",
            "2026-06-01 00:14:59+00",
            "2026-06-01 00:15:01+00",
            "9999-12-31 23:59:59+00",
            "10000-01-01 00:00:00+00",
            "infinity",
            "0001-01-01 00:00:00+00",
            "1900-01-01 00:30:00+01",
            "1899-12-31 23:30:00-01",
            "-infinity",
        ]
    ),
}
# A feed's contract: its optional `ordered_at` is judged too (the SQL path gets the same rules).
ORDER_VALUES = {
    "order_id": st.sampled_from(["1", "2", None]),
    "customer_id": st.sampled_from(["10", None]),
    "product_id": st.just("CUR-STD"),
    "channel": st.sampled_from(["web", "fax", None]),
    "status": st.sampled_from(["placed", "lost", None]),
    "amount": st.sampled_from(["10.00", "-1", None]),
    "ordered_at": st.sampled_from(
        [
            "2026-01-02T10:00:00Z",
            "0001-01-01T00:00:00Z",
            "1899-12-31T23:59:59Z",
            "10000-01-01T00:00:00Z",
            "infinity",
            None,
        ]
    ),
    "updated_at": st.sampled_from(
        ["2026-01-02T10:00:00Z", "0001-01-01T00:00:00Z", "10000-01-01T00:00:00Z"]
    ),
}
ACCOUNT_VALUES = {
    "account_id": st.sampled_from(["1", "2", None]),
    "sort_code": st.sampled_from(["20-00-01", "200001", "20-00-0a", " 20-00-01", None]),
    "account_number": st.sampled_from(["12345678", "1234567", "1234567x", None]),
    "iban": st.sampled_from(
        ["GB29NWBK60161331926819", "GB28NWBK60161331926819", "GB29", "DE89370400440532013000", None]
    ),
    "currency": st.sampled_from(["GBP", "USD", "XYZ", None]),
    "status": st.sampled_from(["open", "closed", "frozen", None]),
    "updated_at": st.just("2026-01-02 09:00:00+00"),
}
ACCOUNT_BALANCE_VALUES = {
    "account_id": st.sampled_from(["10000001", "10000002", None]),
    "currency": st.sampled_from(["GBP", "EUR", "XYZ", None]),
    "opening_balance": st.sampled_from(["0", "-250.00", "1500.25", None]),
    "balance": st.sampled_from(["-12000.50", "0", "98765.43", None]),
    "booked_transactions": st.sampled_from(["0", "7", "-1", None]),
    "updated_at": st.sampled_from(["2026-01-02 09:00:00+00", "2026-06-01 00:15:01+00"]),
}
CUSTOMER_VALUES = {
    "customer_id": st.sampled_from(["1", "2", None]),
    "first_name": st.sampled_from(["Ann", "", None]),
    "last_name": st.sampled_from(["Lee", None]),
    "email": st.sampled_from(
        ["ann@example.co.uk", "ann@example", "ann example.com", "a@b.c", None]
    ),
    "updated_at": st.just("2026-01-02 09:00:00+00"),
}
SOURCE_TYPES = {  # the source's column types (sql/source/corebank.sql)
    "transaction_id": "bigint",
    "account_id": "bigint",
    "customer_id": "bigint",
    "amount": "numeric(14,2)",
    "currency": "char(3)",
    "booking_date": "date",
    "updated_at": "timestamptz",
    "booked_at": "timestamptz",
    "counterparty_account_id": "bigint",
    "opening_balance": "numeric(14,2)",
    "balance": "numeric(14,2)",
    "booked_transactions": "bigint",
    "order_id": "bigint",
    "ordered_at": "timestamptz",
}


@pytest.fixture(scope="module")
def sql_conn(new_database):
    with psycopg.connect(new_database("contracts"), autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        yield conn


def sql_verdict(conn: psycopg.Connection, entity: str, rows: list[dict]) -> dict[int, list[str]]:
    """Rules broken per row position, as the warehouse judges a database batch."""
    contract = contract_for(entity)
    columns = list(rows[0])
    table = sql.Identifier(f"judge_{entity}")
    conn.execute(sql.SQL("drop table if exists {}").format(table))
    conn.execute(
        sql.SQL("create table {} (_position int, {})").format(
            table,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(SOURCE_TYPES.get(c, "text")))
                for c in columns
            ),
        )
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            sql.SQL("copy {} (_position, {}) from stdin").format(
                table, sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        ) as copy,
    ):
        for position, row in enumerate(rows):
            copy.write_row((position, *(row[c] for c in columns)))
    with conn.transaction():
        prepare_iban_check(conn, table, sql.SQL("true"), contract)
        names = rules_broken(contract, NOW)
        found = conn.execute(
            sql.SQL("select _position, {} from {} order by _position").format(names, table)
        ).fetchall()
    return {position: rules for position, rules in found if rules}


def rows_of(values: dict) -> st.SearchStrategy[list[dict]]:
    return st.lists(st.fixed_dictionaries(values), min_size=1, max_size=25)


@pytest.mark.parametrize(
    ("entity", "values"),
    [
        ("transactions", TRANSACTION_VALUES),
        ("accounts", ACCOUNT_VALUES),
        ("account_balances", ACCOUNT_BALANCE_VALUES),
        ("customers", CUSTOMER_VALUES),
        ("orders", ORDER_VALUES),
    ],
)
def test_sql_judges_every_row_as_gx_does(validator, sql_conn, entity, values):
    @settings(
        max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(rows=rows_of(values))
    def agree(rows: list[dict]) -> None:
        by_gx = validator.validate(entity, pd.DataFrame(rows), now=NOW).broken
        by_sql = sql_verdict(sql_conn, entity, rows)
        assert {p: sorted(r) for p, r in by_sql.items()} == {
            p: sorted(r) for p, r in by_gx.items()
        }, rows

    agree()


def test_dates_outside_the_plausible_range_are_named_alike_by_gx_and_sql(validator, sql_conn):
    good = {
        "transaction_id": "1",
        "account_id": "7",
        "amount": "10.50",
        "currency": "GBP",
        "direction": "debit",
        "status": "booked",
        "booking_date": "2026-01-02",
        "updated_at": "2026-01-02 09:00:00+00",
        "channel": "card",
        "merchant_category": "groceries",
        "counterparty_account_id": None,
        "booked_at": "2026-01-02 09:00:00+00",
    }
    cases = [
        ({"booking_date": "0001-01-01"}, ["booking_date_too_early"]),
        ({"booking_date": "1899-12-31"}, ["booking_date_too_early"]),
        ({"booking_date": "1900-01-01"}, []),
        ({"booking_date": "10000-01-01"}, ["booking_date_in_future"]),
        ({"booking_date": "infinity"}, ["booking_date_in_future"]),
        ({"booking_date": "-infinity"}, ["booking_date_too_early"]),
        ({"updated_at": "0001-01-01 00:00:00+00", "booking_date": None}, ["updated_at_too_early"]),
        # Compared at midnight UTC: 23:30 at UTC-1 is already 1900 there, 00:30 at UTC+1 not yet.
        ({"updated_at": "1899-12-31 23:30:00-01", "booking_date": None}, []),
        ({"updated_at": "1900-01-01 00:30:00+01", "booking_date": None}, ["updated_at_too_early"]),
        ({"updated_at": "0044-03-15 12:00+00 BC", "booking_date": None}, ["updated_at_too_early"]),
        ({"updated_at": "-infinity", "booking_date": None}, ["updated_at_too_early"]),
        ({"updated_at": "infinity", "booking_date": None}, ["updated_at_in_future"]),
    ]
    rows = [{**good, **change, "transaction_id": str(i)} for i, (change, _) in enumerate(cases)]
    expected = {i: rules for i, (_, rules) in enumerate(cases) if rules}

    assert validator.validate("transactions", pd.DataFrame(rows), now=NOW).broken == expected
    assert sql_verdict(sql_conn, "transactions", rows) == expected


def test_feed_timestamps_outside_the_plausible_range(validator):
    good = {
        "order_id": "1",
        "customer_id": "10",
        "product_id": "CUR-STD",
        "channel": "web",
        "status": "placed",
        "amount": "10.00",
        "ordered_at": "2026-01-02T10:00:00Z",
        "updated_at": "2026-01-02T10:00:00Z",
    }
    cases = [
        ({"ordered_at": "0001-01-01T00:00:00Z"}, ["ordered_at_too_early"]),
        ({"ordered_at": "10000-01-01T00:00:00Z"}, ["ordered_at_in_future"]),
        ({"updated_at": "0001-01-01T00:00:00Z"}, ["updated_at_too_early"]),
        ({"updated_at": "10000-01-01T00:00:00Z"}, ["updated_at_in_future"]),
        ({"ordered_at": None}, []),  # optional: absent is fine
    ]
    rows = [{**good, **change, "order_id": str(i)} for i, (change, _) in enumerate(cases)]
    verdict = validator.validate("orders", pd.DataFrame(rows), now=NOW)
    assert verdict.broken == {i: rules for i, (_, rules) in enumerate(cases) if rules}
