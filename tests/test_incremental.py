"""Every run costs what is new, and what it builds does not depend on how the work was split:
silver, vault and gold built run by run over six days of warehouse time equal the same layers of
a second warehouse built from the same raw history in one run, every table, row for row, every
column (load times and hashdiffs included).

The history holds what makes incremental loading hard: customers changing A, B, then back to A
across days; several loads inside one day (the daily interval holds three publications, and a
customer changes in each); transactions going from pending to booked, and cancelled (deleted in
the source); a day's CRM files held back and delivered two days late (their versions are older
than some already in the vault); and a replay from quarantine that releases an account's held-back
transactions. A release reaches the vault and gold in the next run, as a new event, and the
second warehouse agrees.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from flows.pipeline import run_flow
from flows.quality.replay import replay
from flows.settings import get_settings, reset_settings
from flows.simulate import Rates, simulate
from flows.simulate.feeds import FeedRates
from flows.simulate.generator import gb_iban
from flows.transform import Transformation
from tests.vault_helpers import copy_raw_history

SCALE, SEED = 60, 23
# Busier CRM feeds than the demo's: orders and opportunities move most days, so a late file
# carries versions older than ones already loaded.
RATES = Rates(
    feeds=FeedRates(new_opportunities=0.05, opportunity_moves=0.6, new_orders=0.05, order_moves=0.6)
)
HELD_FEEDS = ("orders", "opportunities", "interactions")


# Tables that record operations rather than data: gold.dq_scorecard scores the contract results
# and the audits as they ran (ops.dq_results, ops.audit_results), which a warehouse rebuilt from
# raw did not run the same way (one plan instead of a run per load).
OPERATIONAL_TABLES = ("gold.dq_scorecard",)


def compared_tables(url: str) -> list[str]:
    """Every table and view of silver, vault and gold (SQLMesh shows each model as a view), but
    the operational ones."""
    with psycopg.connect(url) as conn:
        return [
            name
            for (name,) in conn.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_schema in ('silver', 'vault', 'gold') order by 1"
            )
            if name not in OPERATIONAL_TABLES
        ]


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row (all columns, in row order) per compared table."""
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        result = {}
        for table in compared_tables(url):
            schema, name = table.split(".")
            result[table] = conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                    "from {} as t"
                ).format(sql.Identifier(schema, name))
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


def change_customer(source: str, customer_id: int, **values: str) -> None:
    """A change the source records now: stamped a second after its latest change, so the
    watermark takes it and it falls in simulated time."""
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in values.items()
    )
    with psycopg.connect(source) as conn:
        conn.execute(
            sql.SQL(
                "update customers set {}, "
                "updated_at = (select max(updated_at) from customers) + interval '1 second' "
                "where customer_id = %s"
            ).format(assignments),
            (customer_id,),
        )


def hold_back_files(landing: Path, held: Path) -> list[Path]:
    """Move the newest day's CRM files out of the landing folder: they arrive late."""
    moved = []
    for feed in HELD_FEEDS:
        newest = max((landing / feed).glob(f"{feed}_*"))
        held.mkdir(exist_ok=True)
        moved.append(Path(shutil.move(newest, held / newest.name)))
    return moved


def deliver_late(landing: Path, files: list[Path]) -> None:
    for path in files:
        feed = path.name.split("_")[0]
        shutil.move(path, landing / feed / path.name)


@pytest.fixture(scope="module")
def history(bank_factory, tmp_path_factory):
    """Six days of warehouse time, a run or more per day (see the module's docstring)."""
    bank = bank_factory("incremental")
    wh, src = bank.warehouse_url, bank.source_url
    # A server warehouse reads no landing folder unless told (the safe default): name one.
    landing = tmp_path_factory.mktemp("landing")
    held_dir = tmp_path_factory.mktemp("held")
    patch = pytest.MonkeyPatch()
    patch.setenv("LANDING_DIR", str(landing))
    reset_settings()

    def next_day() -> None:
        advance_warehouse_clock(wh)
        simulate(src, 1, scale=SCALE, seed=SEED, bad_rate=0.03, landing_dir=landing, rates=RATES)

    simulate(src, 3, scale=SCALE, seed=SEED, bad_rate=0.03, landing_dir=landing, rates=RATES)
    run_flow()  # day 1
    a_to_b, twice = 1, 2  # two customers of the first day
    original = scalar(src, "select city from customers where customer_id = %s", (a_to_b,))
    next_day()
    change_customer(src, a_to_b, city="Bristol")  # A -> B
    run_flow()  # day 2
    next_day()
    late = hold_back_files(landing, held_dir)  # day 3's CRM files are late
    held = release_a_quarantined_account(wh)
    run_flow()  # day 3
    next_day()
    change_customer(src, a_to_b, city=original)  # B -> A
    change_customer(src, twice, email="first.change@example.com")
    run_flow()  # day 4, three loads
    change_customer(src, twice, email="second.change@example.com")
    run_flow()
    change_customer(src, twice, email="third.change@example.com")
    run_flow()
    next_day()
    deliver_late(landing, late)
    run_flow()  # day 5: day 3's files arrive
    next_day()
    run_flow()  # day 6
    yield bank, held, (a_to_b, twice)
    patch.undo()
    reset_settings()


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
    bank, (account, held), _ = history
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


def test_the_history_holds_what_makes_incremental_loading_hard(history):
    bank, _, (a_to_b, twice) = history
    wh = bank.warehouse_url
    assert scalar(wh, "select count(distinct published_at::date) from ops.batches") >= 6
    # One daily interval holds three publications.
    assert (
        scalar(
            wh,
            "select max(n) from (select count(distinct published_at) as n from ops.batches "
            "group by published_at::date) as per_day",
        )
        >= 3
    )
    cities = scalar(
        wh,
        "select string_agg(s.city, ' -> ' order by s.effective_from) "
        "from vault.sat_customer_personal s join vault.hub_customer h using (customer_hk) "
        "where h.customer_id = %s",
        (a_to_b,),
    ).split(" -> ")
    assert len(cities) == 3 and cities[0] == cities[2] == cities[0] != cities[1] == "Bristol"
    assert (
        scalar(
            wh,
            "select count(*) from vault.sat_customer_personal s join vault.hub_customer h "
            "using (customer_hk) where h.customer_id = %s",
            (twice,),
        )
        >= 4
    )
    # Transactions went from pending to booked; some were deleted in the source.
    assert (
        scalar(
            wh,
            "select count(*) from (select transaction_hk from vault.sat_transaction_details "
            "group by 1 having count(distinct status) = 2) as settled",
        )
        > 0
    )
    assert scalar(wh, "select count(*) from vault.sat_transaction_deleted where is_deleted") > 0
    # The late files brought versions older than ones the vault already held.
    assert (
        scalar(
            wh,
            """
        select count(*) from vault.sat_order_details as late
        where exists (
          select 1 from vault.sat_order_details as earlier
          where earlier.order_hk = late.order_hk and earlier.load_ts < late.load_ts
            and earlier.effective_from > late.effective_from)
        """,
        )
        + scalar(
            wh,
            """
        select count(*) from vault.sat_opportunity_details as late
        where exists (
          select 1 from vault.sat_opportunity_details as earlier
          where earlier.opportunity_hk = late.opportunity_hk and earlier.load_ts < late.load_ts
            and earlier.effective_from > late.effective_from)
        """,
        )
        > 0
    )


def differing(expected: dict[str, tuple[int, str]], actual: dict[str, tuple[int, str]]) -> dict:  # type: ignore[type-arg]
    """The tables whose rows differ (or exist on one side only), with both sides' counts."""
    return {
        table: (expected.get(table, (None,))[0], actual.get(table, (None,))[0])
        for table in sorted(expected.keys() | actual.keys())
        if expected.get(table) != actual.get(table)
    }


def test_silver_vault_and_gold_built_run_by_run_equal_a_second_warehouse_built_in_one_run(
    history, new_database
):
    """A second warehouse, a database of its own, receives the first one's raw history (raw and
    quarantine tables, every batch with its publication time) and builds silver, vault and gold
    in one plan and run, at the first one's final execution time: every table equals the first
    warehouse's, row for row, all columns. (An in-place rebuild, a restatement of every model, is
    checked on the scenario tests' histories: tests/test_vault_patterns.py.)"""
    bank, _, _ = history
    first = bank.warehouse_url
    tables = compared_tables(first)
    assert {"vault.pit_customer", "vault.eff_sat_customer_account", "gold.dim_customer"} <= set(
        tables
    )
    built_run_by_run = snapshot(first)
    assert built_run_by_run["silver.transactions"][0] > 500  # a history of some size
    for table in ("vault.pit_customer", "vault.eff_sat_customer_account", "gold.dim_customer"):
        assert built_run_by_run[table][0] > 0, table
    final_execution_time = scalar(first, "select execution_time from ops.transform_clock")

    second = new_database("wh_second")
    copied = copy_raw_history(first, second)
    assert copied["raw.transactions"] == scalar(first, "select count(*) from raw.transactions")
    assert copied["quarantine.accounts"] > 0  # the replayed account's first, rejected version
    # The second warehouse's settings: the first's, pointed at the new database.
    settings = get_settings().model_copy(update={"warehouse_url": SecretStr(second)})
    with Transformation("second warehouse, one run", settings) as transformation:
        assert transformation.publication.batches == 0  # every batch came published
        assert transformation.execution_time == final_execution_time
        transformation.plan("prod")
        assert transformation.last_plan is not None
        assert {"vault.hub_customer", "gold.dim_customer"} <= set(
            transformation.last_plan.backfilled
        )
        transformation.run("prod")
    # The same six days of loads, now built in one plan (every day's intervals at once) and one
    # run (the hour in progress).
    assert scalar(second, "select count(distinct published_at::date) from ops.batches") >= 6
    assert compared_tables(second) == tables
    assert differing(built_run_by_run, snapshot(second)) == {}
