"""Every date and time rule names its zone (the bank's, BANK_TIMEZONE, UTC by default): the same
source gives the same silver verdicts and the same gold, row for row, on a warehouse whose
TimeZone is UTC, one west of it and one east of it."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from flows.pipeline import run_flow
from flows.settings import reset_settings
from flows.simulate import simulate

ZONES = ("UTC", "America/Los_Angeles", "Asia/Tokyo")
FINGERPRINTS = {
    # Batch ids and load times differ between warehouses by nature; verdicts and gold must not.
    "silver verdicts": "select transaction_id, status, is_valid, dq_issues "
    "from silver.transactions",
    "fact_transactions": "select transaction_hk, transaction_id, account_hk, amount, "
    "signed_amount, booking_date, transaction_date from gold.fact_transactions",
    "dim_customer": "select customer_version_key, customer_id, valid_from, valid_to, is_current "
    "from gold.dim_customer",
    "dim_account": "select account_version_key, account_id, product_id, sort_code, iban, "
    "currency, status, opened_on, closed_on, primary_customer_id, holder_count, details_as_of, "
    "valid_from, valid_to, is_current from gold.dim_account",
}


def fingerprint(url: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")  # how we read the results, not how they were made
        result = {}
        for name, query in FINGERPRINTS.items():
            select = sql.SQL(query)  # type: ignore[arg-type]
            result[name] = conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                    "from ({}) as t"
                ).format(select)
            ).fetchone()
        return result


@pytest.fixture(scope="module")
def source(new_database) -> str:
    url = new_database("src_zones")
    # Bookings fall at every hour of the UTC day: west of UTC, the early ones are "yesterday".
    simulate(url, 6, scale=60, seed=17, bad_rate=0.02)
    return url


def test_results_do_not_depend_on_the_warehouse_time_zone(source, new_database, tmp_path):
    results = {}
    patch = pytest.MonkeyPatch()
    try:
        for zone in ZONES:
            warehouse = new_database("wh_zone")
            with psycopg.connect(warehouse, autocommit=True) as conn:
                name = conn.execute("select current_database()").fetchone()[0]
                conn.execute(
                    sql.SQL("alter database {} set timezone = {}").format(
                        sql.Identifier(name), sql.Literal(zone)
                    )
                )
            patch.setenv("WAREHOUSE_URL", warehouse)
            patch.setenv("SOURCE_URL", source)
            patch.setenv("WAREHOUSE_DIR", str(tmp_path / zone.replace("/", "_")))
            reset_settings()
            run_flow()
            with psycopg.connect(warehouse) as conn:
                assert conn.execute("show timezone").fetchone()[0] == zone
            results[zone] = fingerprint(warehouse)
    finally:
        patch.undo()
        reset_settings()
    assert results["UTC"]["fact_transactions"][0] > 100
    assert results["America/Los_Angeles"] == results["UTC"]
    assert results["Asia/Tokyo"] == results["UTC"]
