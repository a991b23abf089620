"""Deletes in the source at a bounded cost: a frequent run looks up only the keys raw received
recently; every key is compared when a full sweep is due (DELETE_SWEEP_HOURS) or asked for. The
guarantee: a recent row's delete is seen by the next run, any delete by the next full sweep."""

from __future__ import annotations

import psycopg
import pytest

from flows.pipeline import extract_flow
from flows.simulate import simulate


def scalar(url: str, query: str, params: tuple = ()) -> object:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def delete_in_source(url: str, where: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"delete from transactions where transaction_id = "  # noqa: S608 (test's own SQL)
            f"(select min(transaction_id) from transactions where {where}) returning transaction_id"
        ).fetchone()[0]


def marked(url: str, transaction_id: int) -> bool:
    return bool(
        scalar(
            url,
            "select count(*) from raw.transactions where transaction_id = %s and _is_deleted",
            (transaction_id,),
        )
    )


@pytest.fixture(scope="module")
def bank(bank_factory):
    bank = bank_factory("deletes")
    # Ten days: the first lies beyond DELETE_WATCH_DAYS (7) of the source's latest change.
    simulate(bank.source_url, 10, scale=40, seed=31, bad_rate=0.0)
    extract_flow()  # the first load: nothing can be gone, and it counts as a full sweep
    simulate(bank.source_url, 1, scale=40, seed=31, bad_rate=0.0)
    extract_flow()
    return bank


def sweep_time(url: str) -> object:
    return scalar(url, "select swept_at from ops.delete_sweeps where entity = 'transactions'")


def test_a_recent_row_deleted_is_seen_by_the_next_run_without_a_sweep(bank):
    wh = bank.warehouse_url
    swept = sweep_time(wh)
    latest_day = scalar(bank.source_url, "select max(transaction_date) from transactions")
    victim = delete_in_source(
        bank.source_url, f"status = 'pending' and transaction_date = '{latest_day}'"
    )
    batches = {b.entity: b for b in extract_flow()}
    assert batches["transactions"].rows_deleted == 1
    assert marked(wh, victim)
    assert sweep_time(wh) == swept  # found by the recent lookup, not a sweep


def test_an_old_row_deleted_waits_for_the_full_sweep(bank):
    wh = bank.warehouse_url
    first_day = scalar(bank.source_url, "select min(transaction_date) from transactions")
    victim = delete_in_source(bank.source_url, f"transaction_date = '{first_day}'")
    extract_flow()
    # Changed more than DELETE_WATCH_DAYS before the source's latest change: not looked up.
    assert not marked(wh, victim)
    # The sweep falls due (its last run is older than DELETE_SWEEP_HOURS)...
    with psycopg.connect(wh) as conn:
        conn.execute("update ops.delete_sweeps set swept_at = swept_at - interval '25 hours'")
    swept_before = sweep_time(wh)
    batches = {b.entity: b for b in extract_flow()}
    # (with any other old pending row the simulator cancelled since the aged first load)
    assert batches["transactions"].rows_deleted >= 1
    assert marked(wh, victim)
    assert sweep_time(wh) > swept_before


def test_a_full_sweep_can_be_asked_for(bank):
    wh = bank.warehouse_url
    victim = delete_in_source(bank.source_url, "status = 'booked'")
    batches = {b.entity: b for b in extract_flow(deletes="full")}
    assert batches["transactions"].rows_deleted == 1
    assert marked(wh, victim)
    # Nothing marked twice: the next runs find nothing new to mark.
    assert {b.entity: b for b in extract_flow(deletes="full")}["transactions"].rows_deleted == 0
