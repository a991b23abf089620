"""Every run costs what is new: silver, vault and gold built run by run, over several days of
warehouse time, equal the same layers rebuilt from raw at once (row for row, every column). A
release (an account fixed in quarantine after its transactions were held back) reaches the vault
and gold in the next run, as a new event, and the rebuild agrees."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import sql

from flows import transform
from flows.pipeline import run_flow
from flows.quality.replay import replay
from flows.simulate import simulate
from flows.simulate.generator import gb_iban

SCALE, SEED = 80, 23
# Every incremental model and what orders its rows for comparison.
COMPARED = {
    "silver.customers": "customer_id, batch_id, load_ts",
    "silver.accounts": "account_id, batch_id, load_ts",
    "silver.account_standing": "account_id, standing",
    "silver.account_holders": "account_id, customer_id, valid_from, batch_id, load_ts",
    "silver.transactions": "transaction_id, batch_id, load_ts",
    "vault.hub_customer": "customer_hk",
    "vault.hub_account": "account_hk",
    "vault.hub_transaction": "transaction_hk",
    "vault.link_customer_account": "customer_account_hk",
    "vault.link_account_transaction": "account_transaction_hk",
    "vault.sat_customer_details": "customer_hk, load_ts",
    "vault.sat_account_details": "account_hk, load_ts",
    "vault.sat_transaction_details": "transaction_hk, load_ts",
    "vault.sat_transaction_deleted": "transaction_hk, load_ts",
    "gold.fact_transactions": "transaction_hk",
    "gold.dim_customer": "customer_hk, valid_from",
    "gold.dim_account": "account_hk",
}


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row (all columns, in key order) per compared table."""
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        result = {}
        for table, order in COMPARED.items():
            schema, name = table.split(".")
            result[table] = conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(t::text, '|' order by {}), '')) "
                    "from {} as t"
                ).format(sql.SQL(order), sql.Identifier(schema, name))
            ).fetchone()
        return result


def advance_warehouse_clock(url: str, days: int = 1) -> None:
    """The next publication is stamped `days` later: loads land on another calendar day, so the
    daily and hourly intervals really split the work (the clock only moves forward)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "update ops.transform_clock set execution_time = execution_time + %s",
            (timedelta(days=days),),
        )


def scalar(url: str, query: str, params: tuple = ()) -> object:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


@pytest.fixture(scope="module")
def history(bank_factory):
    """Five days of warehouse time: a day of source per run, bad records included, a replay that
    releases an account's held-back transactions on day four."""
    bank = bank_factory("incremental")
    wh, src = bank.warehouse_url, bank.source_url
    simulate(src, 4, scale=SCALE, seed=SEED, bad_rate=0.03)
    run_flow()
    held = None
    for day in range(4):
        advance_warehouse_clock(wh)
        simulate(src, 1, scale=SCALE, seed=SEED, bad_rate=0.03)
        if day == 2:
            held = release_a_quarantined_account(wh)
        run_flow()
    return bank, held


def release_a_quarantined_account(wh: str) -> tuple[int, int]:
    """A data steward fixes the IBAN of an account the contract quarantined; the replay loads it.
    Returns (account, how many of its transactions silver held back)."""
    with psycopg.connect(wh) as conn:
        account, sort_code, number = conn.execute(
            """
            select (q.payload ->> 'account_id')::bigint, q.payload ->> 'sort_code',
                   q.payload ->> 'account_number'
            from quarantine.accounts as q
            where q.resolution is null and q.rules = array['iban_invalid']
              and exists (
                select 1 from silver.transactions as t
                where t.account_id = (q.payload ->> 'account_id')::bigint
                  and 'account_invalid' = any(t.dq_issues))
            order by 1 limit 1
            """
        ).fetchone()
        held = conn.execute(
            "select count(distinct transaction_id) from silver.transactions "
            "where account_id = %s and 'account_invalid' = any(dq_issues)",
            (account,),
        ).fetchone()[0]
        conn.execute(
            "update quarantine.accounts "
            "set payload = jsonb_set(payload, '{iban}', to_jsonb(%s::text)) "
            "where (payload ->> 'account_id')::bigint = %s and resolution is null",
            (gb_iban(sort_code, number), account),
        )
        result = replay(conn, "accounts")
    assert result.replayed >= 1
    return account, held


def test_a_released_account_reaches_the_vault_and_gold_as_a_new_event(history):
    bank, (account, held) = history
    wh = bank.warehouse_url
    assert held > 0
    released = scalar(
        wh,
        "select count(*) from silver.transactions where account_id = %s and is_release",
        (account,),
    )
    assert released > 0
    # Every released transaction is in the vault, loaded when the account was released.
    assert scalar(
        wh,
        """
        select count(*) from silver.transactions as r
        join vault.link_account_transaction as l
          on l.account_transaction_hk = r.account_transaction_hk and l.load_ts = r.load_ts
        where r.account_id = %s and r.is_release and r.is_valid
        """,
        (account,),
    ) == scalar(
        wh,
        "select count(*) from silver.transactions where account_id = %s and is_release "
        "and is_valid",
        (account,),
    )
    assert scalar(
        wh,
        "select count(*) from gold.fact_transactions where account_id = %s",
        (account,),
    ) == scalar(
        wh,
        "select count(*) from silver.current_transactions "
        "where account_id = %s and is_valid and status = 'booked' and not is_deleted",
        (account,),
    )


def test_silver_vault_and_gold_built_run_by_run_equal_a_rebuild_from_raw(history):
    bank, _ = history
    wh = bank.warehouse_url
    days = scalar(wh, "select count(distinct published_at::date) from ops.batches")
    assert days >= 5  # the work really was split over days
    before = snapshot(wh)
    assert before["silver.transactions"][0] > 1000
    with transform.Transformation("rebuild") as transformation:
        transformation.rebuild(list(COMPARED))
    assert snapshot(wh) == before
