"""The main job end to end on real Postgres, real Prefect flows and real SQLMesh plans:
reconciliation, idempotence, incremental loads, deletes."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from flows.pipeline import run_flow
from flows.settings import reset_settings
from flows.simulate import simulate
from flows.summary import LAYER_TABLES

SCALE = 150
DAYS = 30
SEED = 7


FACT_FINGERPRINT = (
    "select md5(string_agg(t::text, '' order by transaction_hk)) from gold.fact_transactions t"
)


def booked_in_source(source_url: str) -> tuple[int, Decimal]:
    with psycopg.connect(source_url) as conn:
        return conn.execute(
            "select count(*), coalesce(sum(amount), 0) from transactions where status = 'booked'"
        ).fetchone()


def one(url: str, query: str, params: tuple = ()) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()


def layer_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            f"{layer}.{table}": conn.execute(
                sql.SQL("select count(*) from {}.{}").format(
                    sql.Identifier(layer), sql.Identifier(table)
                )
            ).fetchone()[0]
            for layer, tables in LAYER_TABLES.items()
            if layer != "silver"
            for table in tables
        }


@pytest.fixture(scope="module")
def clean_bank(bank_factory, tmp_path_factory):
    """A bank without bad records, 30 simulated days with their CRM feed files, run once."""
    bank = bank_factory("clean")
    # The CRM feeds fill the vault's CRM hubs, links and satellites; a server warehouse reads no
    # landing folder unless told.
    landing = tmp_path_factory.mktemp("landing")
    patch = pytest.MonkeyPatch()
    patch.setenv("LANDING_DIR", str(landing))
    reset_settings()
    simulate(bank.source_url, DAYS, scale=SCALE, seed=SEED, bad_rate=0.0, landing_dir=landing)
    summary = run_flow()
    yield bank, summary
    patch.undo()
    reset_settings()


def test_first_run_fills_every_layer(clean_bank):
    bank, summary = clean_bank
    counts = layer_counts(bank.warehouse_url)
    # A first load finds no deletes: nothing to track yet.
    for entity in ("customer", "account", "product", "transaction"):
        assert counts.pop(f"vault.sat_{entity}_deleted") == 0
    assert all(n > 0 for n in counts.values()), counts
    assert [step for step, _, _ in summary.steps] == [
        "extract",
        "publish",
        "sqlmesh plan",
        "sqlmesh run",
    ]
    assert summary.layer_rows["gold"]["fact_transactions"] == counts["gold.fact_transactions"]
    assert sum(summary.invalid_rows.values()) == 0


def test_gold_reconciles_with_source_to_the_penny(clean_bank):
    bank, _ = clean_bank
    source_count, source_sum = booked_in_source(bank.source_url)
    gold_count, gold_sum, signed_ok = one(
        bank.warehouse_url,
        "select count(*), sum(amount), bool_and(abs(signed_amount) = amount) "
        "from gold.fact_transactions",
    )
    assert source_count > 1000
    assert (gold_count, gold_sum) == (source_count, source_sum)
    assert signed_ok


def test_second_run_without_source_change_adds_nothing(clean_bank):
    bank, _ = clean_bank
    before = layer_counts(bank.warehouse_url)
    raw_rows_before = one(bank.warehouse_url, "select count(*) from raw.transactions")[0]
    fact_before = one(
        bank.warehouse_url,
        FACT_FINGERPRINT,
    )
    summary = run_flow()
    assert layer_counts(bank.warehouse_url) == before
    assert one(bank.warehouse_url, "select count(*) from raw.transactions")[0] == raw_rows_before
    # Nothing new was published, and the project is as last run: SQLMesh is not even loaded.
    details = {step: detail for step, _, detail in summary.steps}
    assert details["publish"].startswith("0 batches")
    assert details["sqlmesh plan"] == "0 new model versions"
    assert details["sqlmesh run"] == "nothing new: SQLMesh not loaded"
    assert (
        one(
            bank.warehouse_url,
            FACT_FINGERPRINT,
        )
        == fact_before
    )


def test_one_more_day_loads_only_what_changed(clean_bank):
    bank, _ = clean_bank
    wh, src = bank.warehouse_url, bank.source_url
    with psycopg.connect(wh) as conn:
        watermarks = dict(
            conn.execute("select entity, high_watermark from ops.watermarks").fetchall()
        )
        sat_before = conn.execute("select count(*) from vault.sat_customer_personal").fetchone()[0]
        known_customers = {r[0] for r in conn.execute("select customer_id from vault.hub_customer")}
        last_batch = conn.execute("select max(batch_id) from ops.batches").fetchone()[0]

    simulate(src, 1, scale=SCALE, seed=SEED, bad_rate=0.0)
    with psycopg.connect(src) as conn:
        changed = {
            entity: conn.execute(
                sql.SQL("select count(*) from {} where updated_at > %s").format(
                    sql.Identifier(entity)
                ),
                (watermarks[entity],),
            ).fetchone()[0]
            for entity in watermarks
        }
        touched_customers = {
            r[0]
            for r in conn.execute(
                "select customer_id from customers where updated_at > %s",
                (watermarks["customers"],),
            )
        }
    run_flow()

    with psycopg.connect(wh) as conn:
        loaded = dict(
            conn.execute(
                "select entity, sum(rows_loaded) from ops.batches "
                "where batch_id > %s group by entity",
                (last_batch,),
            ).fetchall()
        )
        sat_after = conn.execute("select count(*) from vault.sat_customer_personal").fetchone()[0]
        versions = conn.execute(
            """
            select customer_id, count(*), count(*) filter (where is_current),
                   bool_and(valid_to is not null or is_current)
            from gold.dim_customer where customer_id = any(%s) group by customer_id
            """,
            (list(touched_customers),),
        ).fetchall()

    # Only new or changed rows were extracted: exactly what the source changed since the watermark.
    assert loaded == changed
    assert changed["transactions"] > 0 and changed["customers"] > 0
    # The personal satellite (addresses, e-mails) grows by exactly the customers whose details
    # changed (plus new customers).
    changed_existing = touched_customers & known_customers
    assert changed_existing, "the simulated day changed no existing customer"
    assert sat_after - sat_before == len(touched_customers)
    # Each changed customer now has its old version closed and exactly one current version.
    by_customer = {cid: (n, current, closed_ok) for cid, n, current, closed_ok in versions}
    for cid in changed_existing:
        n, current, closed_ok = by_customer[cid]
        assert n >= 2 and current == 1 and closed_ok, (cid, by_customer[cid])
    # Booked transactions still reconcile after the incremental run.
    assert booked_in_source(src) == one(
        wh, "select count(*), sum(amount) from gold.fact_transactions"
    )


def test_cancelled_transactions_are_delete_markers_in_raw(clean_bank):
    bank, _ = clean_bank
    with psycopg.connect(bank.source_url) as conn:
        in_source = {r[0] for r in conn.execute("select transaction_id from transactions")}
    with psycopg.connect(bank.warehouse_url) as conn:
        deleted = {
            r[0]
            for r in conn.execute("select transaction_id from raw.transactions where _is_deleted")
        }
        ever_loaded = {r[0] for r in conn.execute("select transaction_id from raw.transactions")}
        silver_deleted = conn.execute(
            "select count(*) from silver.current_transactions where is_deleted"
        ).fetchone()[0]
    assert deleted, "the simulated days cancelled no extracted transaction"
    assert deleted == ever_loaded - in_source
    assert silver_deleted == len(deleted)


def test_a_pending_transaction_deleted_now_is_marked_on_the_next_extract(clean_bank):
    bank, _ = clean_bank
    with psycopg.connect(bank.source_url) as conn:
        (victim,) = conn.execute(
            "delete from transactions where transaction_id = "
            "(select min(transaction_id) from transactions where status = 'pending') "
            "returning transaction_id"
        ).fetchone()
    from flows.pipeline import extract_flow

    batches = {b.entity: b for b in extract_flow()}
    assert batches["transactions"].rows_deleted == 1
    assert one(
        bank.warehouse_url,
        "select count(*) from raw.transactions where transaction_id = %s and _is_deleted",
        (victim,),
    ) == (1,)


def test_every_transaction_finds_its_customer_as_of_its_day(clean_bank):
    """dim_customer's first version holds from the customer's creation: an as-of join from a
    transaction to its account's primary holder never falls before the first version."""
    bank, _ = clean_bank
    missing, total = one(
        bank.warehouse_url,
        """
        select count(*) filter (where not exists (
                 select 1 from gold.dim_customer as c
                 where c.customer_id = a.primary_customer_id
                   and c.valid_from < (f.transaction_date + 1)::timestamp at time zone 'UTC'
                   and (c.valid_to is null
                        or c.valid_to > f.transaction_date::timestamp at time zone 'UTC'))),
               count(*)
        from gold.fact_transactions as f
        join gold.dim_account as a on a.account_hk = f.account_hk and a.is_current
        where a.primary_customer_id is not null
        """,
    )
    assert total > 1000
    assert missing == 0
