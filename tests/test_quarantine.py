"""Contracts at extraction: quarantine, replay, rejected batches, schema drift (real Postgres)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from flows.cli import app
from flows.load import table_columns
from flows.pipeline import extract_flow
from flows.simulate import simulate

KEYS = {
    "products": ("product_id",),
    "customers": ("customer_id",),
    "accounts": ("account_id",),
    "account_holders": ("account_id", "customer_id", "valid_from"),
    "transactions": ("transaction_id",),
}


def versions_in_source(source_url: str, entity: str) -> set[tuple]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in (*KEYS[entity], "updated_at"))
    with psycopg.connect(source_url) as conn:
        return set(conn.execute(sql.SQL("select {} from {}").format(cols, sql.Identifier(entity))))


def versions_in_warehouse(wh_url: str, entity: str) -> tuple[set[tuple], set[tuple]]:
    """(key..., updated_at) in raw, and in quarantine (not replayed), typed as raw types them."""
    with psycopg.connect(wh_url) as conn:
        types = {c.name: c.type for c in table_columns(conn, "raw", entity)}
        cols = (*KEYS[entity], "updated_at")
        raw = set(
            conn.execute(
                sql.SQL("select {} from {} where not _is_deleted").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                    sql.Identifier("raw", entity),
                )
            )
        )
        quarantined = set(
            conn.execute(
                sql.SQL("select {} from {} where resolution is distinct from 'replayed'").format(
                    sql.SQL(", ").join(
                        sql.SQL("(payload ->> {})::{}").format(sql.Literal(c), sql.SQL(types[c]))
                        for c in cols
                    ),
                    sql.Identifier("quarantine", entity),
                )
            )
        )
    return raw, quarantined


@pytest.fixture(scope="module")
def dirty_bank(bank_factory):
    bank = bank_factory("quarantine")
    simulate(bank.source_url, 12, scale=150, seed=5, bad_rate=0.03)
    extract_flow()
    return bank


def test_bad_rows_are_quarantined_with_every_rule_and_batch(dirty_bank):
    with psycopg.connect(dirty_bank.warehouse_url) as conn:
        rows = conn.execute(
            "select q.rules, q.batch_id, b.entity, q.payload ? 'transaction_id' "
            "from quarantine.transactions q join ops.batches b using (batch_id)"
        ).fetchall()
        raw_bad = conn.execute(
            "select count(*) from raw.transactions "
            "where currency not in ('GBP', 'EUR', 'USD') or amount <= 0"
        ).fetchone()[0]
        results = dict(
            conn.execute(
                "select rule, sum(failed) from ops.dq_results where entity = 'transactions' "
                "group by rule"
            ).fetchall()
        )
    assert rows and all(
        rules and entity == "transactions" and has_key for rules, _, entity, has_key in rows
    )
    assert raw_bad == 0
    assert results["currency_unknown"] == sum("currency_unknown" in r[0] for r in rows)


def test_quarantine_list_shows_counts_and_samples(dirty_bank):
    result = CliRunner().invoke(app, ["quarantine", "list", "--entity", "transactions"])
    assert result.exit_code == 0, result.output
    assert "currency_unknown" in result.output and "pending" in result.output


def test_replay_after_the_data_is_fixed_moves_rows_once(dirty_bank):
    wh = dirty_bank.warehouse_url
    with psycopg.connect(wh) as conn:
        fixed = {
            r[0]
            for r in conn.execute(
                """
                update quarantine.transactions
                set payload = jsonb_set(payload, '{currency}', '"GBP"')
                where rules = '{currency_unknown}' and resolution is null
                returning (payload ->> 'transaction_id')::bigint
                """
            )
        }
        still_bad = conn.execute(
            "select count(*) from quarantine.transactions "
            "where resolution is null and rules <> '{currency_unknown}'"
        ).fetchone()[0]
    assert fixed

    result = CliRunner().invoke(app, ["quarantine", "replay", "--entity", "transactions"])
    assert result.exit_code == 0, result.output
    assert f"{len(fixed)} replayed" in result.output

    with psycopg.connect(wh) as conn:
        in_raw = {
            r[0]
            for r in conn.execute(
                "select transaction_id from raw.transactions t join ops.batches b "
                "on b.batch_id = t._batch_id where b.kind = 'replay'"
            )
        }
        pending = conn.execute(
            "select count(*) from quarantine.transactions where resolution is null"
        ).fetchone()[0]
    assert in_raw == fixed
    assert pending == still_bad

    # A second replay finds nothing new to move: nothing is duplicated.
    again = CliRunner().invoke(app, ["quarantine", "replay", "--entity", "transactions"])
    assert "0 replayed" in again.output


def test_every_source_row_ends_in_raw_or_quarantine_after_days_and_a_replay(dirty_bank):
    simulate(dirty_bank.source_url, 3, scale=150, seed=5, bad_rate=0.03)
    extract_flow()
    with psycopg.connect(dirty_bank.warehouse_url) as conn:
        batches = dict(
            conn.execute(
                "select entity, sum(rows_in) from ops.batches "
                "where status = 'committed' and kind = 'extract' group by entity"
            ).fetchall()
        )
    for entity in KEYS:
        in_source = versions_in_source(dirty_bank.source_url, entity)
        raw, quarantined = versions_in_warehouse(dirty_bank.warehouse_url, entity)
        assert in_source <= raw | quarantined, (entity, len(in_source - raw - quarantined))
        # Every extracted row is in exactly one place (a replayed row moved, it was not copied).
        with psycopg.connect(dirty_bank.warehouse_url) as conn:
            raw_rows = conn.execute(
                sql.SQL("select count(*) from {} where not _is_deleted").format(
                    sql.Identifier("raw", entity)
                )
            ).fetchone()[0]
            quarantine_rows = conn.execute(
                sql.SQL(
                    "select count(*) from {} where resolution is distinct from 'replayed'"
                ).format(sql.Identifier("quarantine", entity))
            ).fetchone()[0]
        assert batches[entity] == raw_rows + quarantine_rows, entity


def test_batch_over_the_threshold_is_refused_whole_and_alerts(bank_factory):
    bank = bank_factory("threshold")
    simulate(bank.source_url, 5, scale=100, seed=9, bad_rate=0.0)
    extract_flow()
    with psycopg.connect(bank.source_url) as conn:
        conn.execute(
            "update transactions set currency = 'XYZ', "
            "updated_at = updated_at + interval '40 days' "
            "where transaction_id % 5 = 0"
        )
        changed = conn.execute(
            "select count(*) from transactions where updated_at > now() - interval '1000 days' "
            "and transaction_id % 5 = 0"
        ).fetchone()[0]
    with psycopg.connect(bank.warehouse_url) as conn:
        raw_before = conn.execute("select count(*) from raw.transactions").fetchone()[0]

    with pytest.raises(Exception, match="above the 5.0% threshold"):
        extract_flow()

    with psycopg.connect(bank.warehouse_url) as conn:
        assert conn.execute("select count(*) from raw.transactions").fetchone()[0] == raw_before
        failed = conn.execute(
            "select batch_id from ops.batches where entity = 'transactions' and status = 'failed'"
        ).fetchall()
        assert len(failed) == 1  # refused, not retried
        (batch_id,) = failed[0]
        assert conn.execute(
            "select failed from ops.dq_results where batch_id = %s and rule = 'currency_unknown'",
            (batch_id,),
        ).fetchone() == (changed,)
        assert conn.execute(
            "select count(*) from ops.alerts where batch_id = %s", (batch_id,)
        ).fetchone() == (1,)


def test_schema_drift_new_column_is_kept_and_reported(bank_factory):
    bank = bank_factory("drift_new")
    simulate(bank.source_url, 3, scale=50, seed=2, bad_rate=0.0)
    extract_flow()
    with psycopg.connect(bank.source_url) as conn:
        conn.execute("alter table customers add column loyalty_tier text")
        conn.execute(
            "update customers set loyalty_tier = 'gold', "
            "updated_at = updated_at + interval '10 days' "
            "where customer_id <= 5"
        )
    batches = {b.entity: b for b in extract_flow()}
    assert batches["customers"].drift == "customers v2: +loyalty_tier"
    with psycopg.connect(bank.warehouse_url) as conn:
        assert conn.execute(
            "select count(*) from raw.customers where loyalty_tier = 'gold'"
        ).fetchone() == (5,)
        assert conn.execute(
            "select added_columns from ops.schema_versions "
            "where entity = 'customers' order by version desc limit 1"
        ).fetchone() == (["loyalty_tier"],)


@pytest.mark.parametrize(
    ("ddl", "column"),
    [
        ("alter table transactions alter column amount type text", "amount"),
        ("alter table transactions drop column currency", "currency"),
    ],
)
def test_schema_drift_on_a_required_column_fails_the_batch(bank_factory, ddl, column):
    bank = bank_factory(f"drift_{column}")
    simulate(bank.source_url, 2, scale=30, seed=4, bad_rate=0.0)
    extract_flow()
    with psycopg.connect(bank.source_url) as conn:
        conn.execute(ddl)
        conn.execute("update transactions set updated_at = updated_at + interval '5 days'")
    with psycopg.connect(bank.warehouse_url) as conn:
        raw_before = conn.execute("select count(*) from raw.transactions").fetchone()[0]
    with pytest.raises(Exception, match=f"transactions: required column '{column}'"):
        extract_flow()
    with psycopg.connect(bank.warehouse_url) as conn:
        assert conn.execute("select count(*) from raw.transactions").fetchone()[0] == raw_before
        assert (
            conn.execute(
                "select count(*) from ops.alerts where entity = 'transactions'"
            ).fetchone()[0]
            == 1
        )


@pytest.mark.parametrize(
    ("ddl", "change", "column"),
    [
        # Widened to numeric: 1e300 no longer fits raw's numeric(14,2).
        (
            "alter table transactions alter column amount type numeric",
            "update transactions set amount = 1e300 where transaction_id = "
            "(select min(transaction_id) from transactions)",
            "amount",
        ),
        # A date turned text, holding what no date is (a column the contract does not require).
        (
            "alter table transactions alter column transaction_date type text",
            "update transactions set transaction_date = 'yesterday-ish' where transaction_id = "
            "(select min(transaction_id) from transactions)",
            "transaction_date",
        ),
    ],
)
def test_a_column_whose_type_changed_stops_the_batch_once_with_an_alert(
    bank_factory, ddl, change, column
):
    """Raw cannot hold the new values: the batch stops before COPY with the table and column
    named, raises an alert, is not retried, and the other tables still load."""
    bank = bank_factory(f"retype_{column}")
    simulate(bank.source_url, 2, scale=30, seed=4, bad_rate=0.0)
    extract_flow()
    with psycopg.connect(bank.source_url) as conn:
        conn.execute(ddl)
        conn.execute(change)
        conn.execute("update transactions set updated_at = updated_at + interval '5 days'")
        conn.execute("update customers set updated_at = updated_at + interval '5 days'")
    with pytest.raises(Exception, match=f"transactions: column '{column}' changed type"):
        extract_flow()
    with psycopg.connect(bank.warehouse_url) as conn:
        failed = conn.execute(
            "select error from ops.batches where entity = 'transactions' and status = 'failed'"
        ).fetchall()
        assert len(failed) == 1, failed  # no retries: it would fail the same way
        assert "alter table raw.transactions" in failed[0][0]
        assert conn.execute(
            "select count(*) from ops.alerts where entity = 'transactions'"
        ).fetchone() == (1,)
        customers_loaded = conn.execute(
            "select count(*) from ops.batches where entity = 'customers' and status = 'committed'"
        ).fetchone()[0]
        assert customers_loaded == 2
