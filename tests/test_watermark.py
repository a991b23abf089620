"""A source row stamped in the far future never carries the watermark with it: it is
quarantined once, with an alert, and extraction of the table goes on. A row stamped a little
ahead of the source's clock (within FUTURE_TOLERANCE_SECONDS) waits for the clock instead."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg
import pytest

from flows.pipeline import extract_flow
from flows.simulate import simulate


def scalar(url: str, query: str, params: tuple = ()) -> object:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


@pytest.fixture(scope="module")
def bank(bank_factory):
    bank = bank_factory("future")
    simulate(bank.source_url, 3, scale=30, seed=5, bad_rate=0.0)
    extract_flow()
    return bank


def test_far_future_rows_are_quarantined_once_and_extraction_goes_on(bank):
    wh, src = bank.warehouse_url, bank.source_url
    with psycopg.connect(src) as conn:
        conn.execute(
            "update customers set updated_at = '9999-12-31 23:00+00' where customer_id = 1"
        )
        # Past Python's datetime range: read as a number it would overflow.
        conn.execute(
            "update customers set updated_at = '10000-01-01 00:00+00' where customer_id = 2"
        )
        # Five minutes ahead of the source's clock: within the tolerance, so it waits.
        conn.execute(
            "update customers set updated_at = now() + interval '5 minutes' where customer_id = 3"
        )
        source_now = conn.execute("select now()").fetchone()[0]

    batches = {b.entity: b for b in extract_flow()}

    assert batches["customers"].rows_quarantined == 2
    with psycopg.connect(wh) as conn:
        held = conn.execute(
            "select (payload ->> 'customer_id')::int, rules from quarantine.customers "
            "where resolution is null order by 1"
        ).fetchall()
        assert held == [(1, ["updated_at_in_future"]), (2, ["updated_at_in_future"])]
        watermark = conn.execute(
            "select high_watermark from ops.watermarks where entity = 'customers'"
        ).fetchone()[0]
        assert watermark <= source_now
        assert conn.execute(
            "select count(*) from raw.customers where customer_id in (1, 2, 3) and updated_at > %s",
            (source_now - timedelta(days=1),),
        ).fetchone() == (0,)
        (alert,) = conn.execute(
            "select message from ops.alerts where entity = 'customers'"
        ).fetchone()
        assert "updated_at_in_future" in alert and "quarantine list" in alert

    # The table is not blocked: the next day's changes are extracted as usual...
    simulate(src, 1, scale=30, seed=5, bad_rate=0.0)
    changed = scalar(
        src,
        "select count(*) from customers where updated_at > %s and updated_at <= now()",
        (watermark,),
    )
    assert changed > 0
    batches = {b.entity: b for b in extract_flow()}
    assert batches["customers"].rows_loaded == changed
    # ...and the far-future rows, read again, are not quarantined a second time.
    assert batches["customers"].rows_quarantined == 0
    assert scalar(wh, "select count(*) from quarantine.customers") == 2

    # Once the source fixes a stamp, the row loads like any change.
    with psycopg.connect(src) as conn:
        conn.execute("update customers set updated_at = now() where customer_id = 1")
    batches = {b.entity: b for b in extract_flow()}
    assert batches["customers"].rows_loaded == 1
    assert scalar(wh, "select count(*) from raw.customers where customer_id = 1") == 2


def test_watermark_survives_as_a_plain_timestamp(bank):
    """Nothing beyond the source's clock is ever written as a watermark (year 10000 included)."""
    latest = scalar(bank.warehouse_url, "select max(high_watermark) from ops.watermarks")
    assert isinstance(latest, datetime)
    assert latest <= scalar(bank.source_url, "select now()")
