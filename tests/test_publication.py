"""Rows reach the vault whatever the clocks say: which rows an interval holds is decided by what
had committed when a transformation published it, not by when a load started (a load that
commits after its day was closed) nor by the orchestrator's clock (minutes ahead of, or behind,
the database's, across midnight)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import time_machine

from flows import transform
from flows.extract.postgres import extract_table
from flows.pipeline import extract_flow, run_flow
from flows.settings import get_settings
from flows.simulate import simulate
from flows.warehouse import connect_source, connect_warehouse

SCALE, SEED = 25, 13


def scalar(url: str, query: str, params: tuple = ()) -> object:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def valid_keys_missing_from_the_vault(url: str) -> int:
    """Valid, live transaction versions silver holds whose key the vault lacks (0 = complete)."""
    return scalar(
        url,
        """
        select count(distinct s.transaction_hk)
        from silver.transactions as s
        where s.is_valid and not s.is_deleted
          and not exists (
            select 1 from vault.hub_transaction as h where h.transaction_hk = s.transaction_hk)
          and not exists (
            select 1 from vault.sat_transaction_details as d
            where d.transaction_hk = s.transaction_hk and d.hashdiff = s.hashdiff)
        """,
    )


def transform_now() -> None:
    with transform.Transformation("test") as transformation:
        transformation.plan("prod")
        transformation.run("prod")


@pytest.fixture
def bank(bank_factory, request):
    bank = bank_factory(f"publication_{request.node.name[-20:]}")
    simulate(bank.source_url, 2, scale=SCALE, seed=SEED, bad_rate=0.0)
    run_flow()
    return bank


def tomorrow_at(hour: int, minute: int, database_url: str) -> datetime:
    """A moment of the database's next day (UTC), whatever this machine's clock says."""
    now = scalar(database_url, "select now()")
    day = (now.astimezone(UTC) + timedelta(days=1)).date()
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def test_a_load_committing_after_its_day_was_closed_reaches_the_vault(bank):
    """The load starts (its `_loaded_at` is today), a transformation closes today while the
    load is still open, then the load commits: the next transformation must take its rows."""
    simulate(bank.source_url, 1, scale=SCALE, seed=SEED, bad_rate=0.0)
    record_source = get_settings().record_source
    for entity in ("products", "customers", "accounts", "account_holders"):
        with connect_source() as source, connect_warehouse() as warehouse:
            extract_table(source, warehouse, entity, record_source)
    blocker = psycopg.connect(bank.warehouse_url)
    # The load will wait at its first write to ops.dq_results, after its COPY, uncommitted.
    blocker.execute("lock table ops.dq_results in share mode")
    outcome: dict[str, object] = {}

    def load() -> None:
        with connect_source() as source, connect_warehouse() as warehouse:
            outcome["batch"] = extract_table(source, warehouse, "transactions", record_source)

    loader = threading.Thread(target=load)
    loader.start()
    with psycopg.connect(bank.warehouse_url, autocommit=True) as watcher:
        deadline = time.monotonic() + 60
        while not watcher.execute(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
            "and query ilike '%%insert into ops.dq_results%%'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the load never reached ops.dq_results"
            time.sleep(0.1)
        # Midnight passes for the warehouse: its clock reads 00:00:30 of the next day, and a
        # transformation then processes (and closes) every interval of today.
        watcher.execute(
            "update ops.transform_clock set execution_time = %s",
            (tomorrow_at(0, 0, bank.warehouse_url) + timedelta(seconds=30),),
        )
    transform_now()
    closed_until = scalar(
        bank.warehouse_url, "select to_timestamp(max(end_ts) / 1000.0) from sqlmesh._intervals"
    )
    blocker.rollback()  # the load goes on and commits
    blocker.close()
    loader.join(60)
    batch = outcome["batch"]
    loaded_at = scalar(
        bank.warehouse_url,
        "select min(_loaded_at) from raw.transactions where _batch_id = %s",
        (batch.batch_id,),
    )
    assert batch.rows_loaded > 0
    assert loaded_at < closed_until  # stamped inside intervals the vault already closed

    transform_now()

    assert valid_keys_missing_from_the_vault(bank.warehouse_url) == 0
    assert (
        scalar(
            bank.warehouse_url,
            "select count(*) from raw.transactions as r join vault.hub_transaction as h "
            "on h.transaction_id = r.transaction_id where r._batch_id = %s",
            (batch.batch_id,),
        )
        > 0
    )


@pytest.mark.parametrize("skew", ["ahead", "behind"])
def test_an_orchestrator_clock_off_across_midnight_loses_nothing(bank, skew):
    """The orchestrator's clock reads 00:02 of the database's next day (ahead) or 23:58 of the
    day before (behind) while loads stamp today: every committed row reaches the vault in the
    next transformation, and none is held back until the clocks agree."""
    wh = bank.warehouse_url
    if skew == "ahead":
        orchestrator = tomorrow_at(0, 2, wh)
    else:
        orchestrator = tomorrow_at(23, 58, wh) - timedelta(days=2)
    with time_machine.travel(orchestrator, tick=True):
        assert datetime.now(UTC).date() != scalar(wh, "select now()").astimezone(UTC).date()
        transform_now()  # on the orchestrator's clock alone, this would close (or skip) today
        for _ in range(2):
            simulate(bank.source_url, 1, scale=SCALE, seed=SEED, bad_rate=0.0)
            extract_flow()
            transform_now()
            assert valid_keys_missing_from_the_vault(wh) == 0
