"""The bank simulator against a real (embedded) PostgreSQL: determinism, bad records, feeds."""

from __future__ import annotations

import csv
import json
import re
from datetime import date
from pathlib import Path

import psycopg
import pytest
import schwifty
from psycopg import sql

from flows.simulate import SimulationSummary, simulate
from flows.simulate.feeds import FEEDS
from flows.simulate.generator import SimState, Snapshot, generate_day

TABLES = {
    "products": "product_id",
    "customers": "customer_id",
    "accounts": "account_id",
    "account_holders": "account_id, customer_id, valid_from",
    "account_balances": "account_id",
    "transactions": "transaction_id",
    "sim_aml_cases": "case_id",
    "sim_state": "id",
}
DAYS = 10
SCALE = 100
START = date(2026, 1, 1)


class Run:
    def __init__(self, url: str, summary: SimulationSummary, landing: Path) -> None:
        self.url, self.summary, self.landing = url, summary, landing


def run_days(new_database, tmp_path_factory, *parts: int, **kwargs) -> Run:
    url = new_database()
    landing = tmp_path_factory.mktemp("landing")
    summaries = [simulate(url, days, scale=SCALE, landing_dir=landing, **kwargs) for days in parts]
    return Run(url, summaries[-1], landing)


@pytest.fixture(scope="module")
def reference(new_database, tmp_path_factory) -> Run:
    return run_days(new_database, tmp_path_factory, DAYS)


@pytest.fixture(scope="module")
def dirty(new_database, tmp_path_factory) -> Run:
    return run_days(new_database, tmp_path_factory, DAYS, bad_rate=0.05)


@pytest.fixture(scope="module")
def clean(new_database, tmp_path_factory) -> Run:
    return run_days(new_database, tmp_path_factory, DAYS, bad_rate=0.0)


def dump(url: str) -> dict[str, bytes]:
    """Every table as COPY text in key order: equal dumps mean byte-identical tables."""
    out = {}
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, keys in TABLES.items():
            query = sql.SQL("copy (select * from {} order by {}) to stdout").format(
                sql.Identifier(table), sql.SQL(keys)
            )
            with cur.copy(query) as copy:
                out[table] = b"".join(bytes(chunk) for chunk in copy)
    return out


def landing_files(landing: Path) -> dict[str, bytes]:
    return {str(p.relative_to(landing)): p.read_bytes() for p in sorted(landing.rglob("*.*"))}


def scalar(url: str, query: str):
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def column(url: str, query: str) -> list:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(query).fetchall()]


# -- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_identical_tables_and_files(reference, new_database, tmp_path_factory):
    twin = run_days(new_database, tmp_path_factory, DAYS)
    assert dump(twin.url) == dump(reference.url)
    assert landing_files(twin.landing) == landing_files(reference.landing)


def test_split_run_equals_one_run(reference, new_database, tmp_path_factory):
    split = run_days(new_database, tmp_path_factory, 6, 4)
    assert dump(split.url) == dump(reference.url)
    assert landing_files(split.landing) == landing_files(reference.landing)
    assert split.summary.days_simulated == 4
    assert split.summary.sim_date == date(2026, 1, 10)


def test_different_seed_differs(reference, new_database, tmp_path_factory):
    other = run_days(new_database, tmp_path_factory, 2, seed=7)
    ours, theirs = dump(reference.url), dump(other.url)
    assert ours["customers"][:2000] != theirs["customers"][:2000]
    assert ours["transactions"][:2000] != theirs["transactions"][:2000]


def test_other_seed_on_existing_source_is_refused(reference):
    with pytest.raises(ValueError, match=r"seed 42.*seed 43"):
        simulate(reference.url, 1, scale=SCALE, seed=43)


# -- what a day does ----------------------------------------------------------------------------


def test_summary_matches_tables(reference):
    s = reference.summary
    assert s.days_simulated == DAYS
    assert s.sim_date == date(2026, 1, 10)
    url = reference.url
    assert scalar(url, "select count(*) from products") == s.inserted["products"] >= 8
    assert scalar(url, "select count(*) from customers") == s.inserted["customers"] > SCALE
    assert scalar(url, "select count(*) from accounts") == s.inserted["accounts"] > SCALE
    assert s.deleted["transactions"] > 0
    expected_tx = s.inserted["transactions"] - s.deleted["transactions"]
    assert scalar(url, "select count(*) from transactions") == expected_tx
    labels = [label for label, _ in s.rows()]
    assert "transactions deleted" in labels and "bad: duplicate transaction" in labels


def test_pending_transactions_settle_within_three_days(reference, clean):
    url = reference.url
    oldest = scalar(url, "select min(transaction_date) from transactions where status = 'pending'")
    assert oldest >= date(2026, 1, 8)  # the last day is 2026-01-10
    lags = column(
        clean.url,  # bad records are booked at once or far ahead, so look at a clean source
        "select distinct booking_date - transaction_date from transactions"
        " where status = 'booked' and transaction_type not in ('fee', 'interest')"
        # Internal transfers and planted AML legs book at once, the instant they are made.
        " and booked_at <> created_at",
    )
    assert set(lags) == {1, 2, 3}
    at_once = column(
        clean.url,
        "select distinct transaction_type from transactions where booked_at = created_at",
    )
    assert {"fee", "interest", "transfer_in", "transfer_out"} <= set(at_once)
    # Cancelled transactions are deleted: their ids leave gaps below the counter.
    next_id = scalar(url, "select next_transaction_id from sim_state")
    gaps = next_id - 1 - scalar(url, "select count(*) from transactions")
    assert gaps == reference.summary.deleted["transactions"] > 0


def test_timestamps_fall_on_simulated_days(reference):
    for table in ("customers", "accounts", "account_holders", "account_balances", "transactions"):
        first, last = (
            psycopg.connect(reference.url)
            .execute(
                sql.SQL(
                    "select min(least(created_at, updated_at) at time zone 'UTC'),"
                    " max(greatest(created_at, updated_at) at time zone 'UTC') from {}"
                ).format(sql.Identifier(table))
            )
            .fetchone()
        )
        assert first.date() >= START and last.date() <= date(2026, 1, 10), table


def test_holders_primary_and_joint(reference):
    url = reference.url
    roles = set(column(url, "select distinct holder_role from account_holders"))
    assert roles == {"primary", "joint"}
    without_primary = scalar(
        url,
        "select count(*) from accounts a where not exists (select 1 from account_holders h"
        " where h.account_id = a.account_id and h.holder_role = 'primary')",
    )
    assert without_primary == 0


def test_progress_is_reported_per_day(new_database):
    calls = []
    simulate(new_database(), 3, scale=20, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


# -- bad records --------------------------------------------------------------------------------


def test_no_bad_records_when_bad_rate_is_zero(clean):
    url = clean.url
    assert sum(clean.summary.bad_records.values()) == 0
    for sort_code in column(url, "select sort_code from accounts"):
        assert re.fullmatch(r"\d{2}-\d{2}-\d{2}", sort_code)
    for iban in column(url, "select iban from accounts"):
        schwifty.IBAN(iban)  # raises when invalid
    assert scalar(url, "select count(*) from transactions where amount <= 0") == 0
    currencies = set(column(url, "select distinct currency from transactions"))
    assert currencies <= {"GBP", "EUR", "USD"}
    assert scalar(url, "select count(*) - count(distinct reference) from transactions") == 0
    assert sum(clean.summary.feed_bad_lines.values()) == 0
    pairs = scalar(url, "select count(distinct (sort_code, account_number)) from accounts")
    assert pairs == scalar(url, "select count(*) from accounts")


def test_bad_records_are_injected_and_counted(dirty):
    url, bad = dirty.url, dirty.summary.bad_records
    in_db = {
        "invalid_sort_code": scalar(
            url, r"select count(*) from accounts where sort_code !~ '^\d{2}-\d{2}-\d{2}$'"
        ),
        "invalid_iban": sum(
            not schwifty.IBAN(iban, allow_invalid=True).is_valid
            for iban in column(url, "select iban from accounts")
        ),
        "non_positive_amount": scalar(url, "select count(*) from transactions where amount <= 0"),
        "unknown_currency": scalar(
            url, "select count(*) from transactions where currency not in ('GBP', 'EUR', 'USD')"
        ),
        "future_booking_date": scalar(
            url,
            "select count(*) from transactions"
            " where booking_date > (updated_at at time zone 'UTC')::date",
        ),
        "duplicate_transaction": scalar(
            url, "select count(*) - count(distinct reference) from transactions"
        ),
    }
    assert dict(bad) == in_db
    assert all(n >= 1 for n in in_db.values()), in_db
    unbooked_bad = scalar(
        url,
        "select count(*) from transactions where status <> 'booked' and (amount <= 0"
        " or currency not in ('GBP', 'EUR', 'USD'))",
    )
    assert unbooked_bad == 0


def test_duplicates_copy_a_booked_transaction(dirty):
    copied = (
        "account_id, reference, transaction_type, direction, amount, currency,"
        " transaction_date, booking_date"
    )
    groups = column(
        dirty.url,
        f"select count(distinct ({copied})) from transactions"
        " where status = 'booked' group by reference having count(*) > 1",
    )
    assert groups and set(groups) == {1}


def test_bad_feed_lines_are_counted(dirty):
    found = {"missing_customer_id": 0, "unknown_channel": 0, "negative_amount": 0, "range": 0}
    for path in dirty.landing.rglob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found["missing_customer_id"] += record["customer_id"] is None
            if "channel" in record:
                found["unknown_channel"] += record["channel"] not in (
                    "branch", "phone", "web", "app", "email",
                )  # fmt: skip
            if "amount" in record:
                found["negative_amount"] += record["amount"] < 0
            if "probability" in record:
                found["range"] += not 0 <= record["probability"] <= 1
    for path in dirty.landing.rglob("*.csv"):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                found["missing_customer_id"] += row["customer_id"] == ""
                found["unknown_channel"] += row["channel"] not in ("branch", "phone", "web", "app")
                found["negative_amount"] += float(row["amount"]) < 0
    counted = dirty.summary.feed_bad_lines
    assert found == {
        "missing_customer_id": sum(n for k, n in counted.items() if k.endswith("customer_id")),
        "unknown_channel": sum(n for k, n in counted.items() if k.endswith("unknown_channel")),
        "negative_amount": sum(n for k, n in counted.items() if k.endswith("negative_amount")),
        "range": counted["opportunities.probability_out_of_range"],
    }
    assert sum(found.values()) >= 3


# -- feeds --------------------------------------------------------------------------------------


def test_feeds_are_written_for_every_day(reference):
    for feed in FEEDS:
        files = sorted((reference.landing / feed).iterdir())
        assert len(files) == DAYS, feed
        assert files[0].name.startswith(f"{feed}_2026-01-01.")
    lines = sum(
        len(p.read_text().splitlines()) for p in (reference.landing / "interactions").iterdir()
    )
    assert lines == reference.summary.feed_lines["interactions"] > 0
    header = (reference.landing / "orders/orders_2026-01-05.csv").read_text().splitlines()[0]
    assert header == "order_id,customer_id,product_id,channel,status,amount,ordered_at,updated_at"


def test_feed_lines_reference_existing_customers(reference):
    customers = set(column(reference.url, "select customer_id from customers"))
    products = set(column(reference.url, "select product_id from products"))
    opportunity_ids_seen: dict[int, int] = {}
    for path in sorted((reference.landing / "opportunities").iterdir()):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record["customer_id"] in customers
            assert record["product_code"] in products
            assert 0 <= record["probability"] <= 1
            opportunity_ids_seen[record["opportunity_id"]] = (
                opportunity_ids_seen.get(record["opportunity_id"], 0) + 1
            )
    assert max(opportunity_ids_seen.values()) > 1  # some opportunities come back with a new stage
    for path in (reference.landing / "interactions").iterdir():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record["customer_id"] in customers
            assert -1 <= record["sentiment"] <= 1
            assert record["occurred_at"].endswith("Z")


# -- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": 0}, "days"),
        ({"scale": 0}, "scale"),
        ({"bad_rate": -0.1}, "bad_rate"),
        ({"bad_rate": 0.6}, "bad_rate"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    arguments = {"days": 1, **kwargs}
    days = arguments.pop("days")
    with pytest.raises(ValueError, match=message):
        simulate("postgresql:///never-connected", days, **arguments)


def test_generator_is_pure():
    snapshot = Snapshot(state=SimState(seed=42, start_date=START, days_simulated=0))
    first = generate_day(snapshot, scale=20, bad_rate=0.1)
    second = generate_day(snapshot, scale=20, bad_rate=0.1)
    assert first == second
    assert len(first.customers) == 20 and first.next_state.days_simulated == 1
