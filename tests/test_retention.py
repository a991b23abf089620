"""Retention (`bankdw cleanup`, flows/retention.py) on a real warehouse built by real runs.

A small bank runs, a data steward fixes and replays quarantined transactions (resolved rows),
then every log stamp is pushed 100 days into the past and the bank runs once more (fresh rows
beside old ones). Cleanup with --days 30 must remove the old resolved quarantine rows and
old logs, keep pending quarantine rows, un-notified alerts, every ledger and all of raw; a
rebuild of silver, vault and gold from raw after the cleanup equals the warehouse as the runs
built it; and a second cleanup removes nothing.

Why pushing stamps back is honest: cleanup decides only by these stamps (quarantined_at and
resolved_at, the batch's finished_at, raised_at, finished_at, recorded_at), so moving them back
100 days is what waiting 100 days would do to them. Nothing SQLMesh reads is moved: raw's load
times, ops.batches.published_at and ops.transform_clock keep their values, so the vault and its
rebuild are exactly what the runs made.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import run_flow
from flows.quality.replay import quarantine_entities, replay
from flows.retention import ABSORBED_CUSTOMER_VERSIONS, cleanup
from flows.simulate import simulate
from tests.vault_helpers import rebuild_everything

SCALE, SEED = 40, 31
BAD_RATE = 0.06
AGE = timedelta(days=100)
DAYS = 30

# The ledgers cleanup must never touch, with raw (every table) added at run time.
LEDGERS = (
    "ops.batches",
    "ops.files",
    "ops.watermarks",
    "ops.transform_clock",
    "ops.delete_sweeps",
    "ops.schema_versions",
    "ops.sqlmesh_runs",
)


def digests(url: str, tables: list[str]) -> dict[str, tuple[int, str]]:
    """Row count and a digest of every row (all columns) per table: equal means same rows."""
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        return {
            table: conn.execute(
                sql.SQL(
                    "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) "
                    "from {} as t"
                ).format(sql.Identifier(*table.split(".")))
            ).fetchone()
            for table in tables
        }


def tables_of(url: str, *schemas: str) -> list[str]:
    """Every table and view of `schemas` (SQLMesh shows each model as a view)."""
    with psycopg.connect(url) as conn:
        return [
            name
            for (name,) in conn.execute(
                "select table_schema || '.' || table_name from information_schema.tables "
                "where table_schema = any(%s) order by 1",
                (list(schemas),),
            )
        ]


def push_into_the_past(url: str) -> None:
    """Every stamp cleanup judges age by moves AGE back (see the module's docstring)."""
    with psycopg.connect(url) as conn:
        for entity in quarantine_entities(conn):
            conn.execute(
                sql.SQL(
                    "update {} set quarantined_at = quarantined_at - %(age)s, "
                    "resolved_at = resolved_at - %(age)s"
                ).format(sql.Identifier("quarantine", entity)),
                {"age": AGE},
            )
        for statement in (
            "update ops.batches set started_at = started_at - %(age)s, "
            "finished_at = finished_at - %(age)s",
            "update ops.alerts set raised_at = raised_at - %(age)s, "
            "notified_at = notified_at - %(age)s",
            "update ops.pipeline_runs set started_at = started_at - %(age)s, "
            "finished_at = finished_at - %(age)s",
            "update ops.audit_results set recorded_at = recorded_at - %(age)s",
        ):
            conn.execute(statement, {"age": AGE})


def count(url: str, query: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


def resolved_quarantine(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            entity: conn.execute(
                sql.SQL("select count(*) from {} where resolution is not null").format(
                    sql.Identifier("quarantine", entity)
                )
            ).fetchone()[0]
            for entity in quarantine_entities(conn)
        }


def pending_quarantine(url: str) -> set[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        return {
            (entity, quarantine_id)
            for entity in quarantine_entities(conn)
            for (quarantine_id,) in conn.execute(
                sql.SQL("select quarantine_id from {} where resolution is null").format(
                    sql.Identifier("quarantine", entity)
                )
            )
        }


@pytest.fixture(scope="module")
def aged(bank_factory):
    """A run and a replay, pushed 100 days back, then a fresh run; the state before any cleanup
    is recorded for the tests to compare with."""
    bank = bank_factory("retention")
    wh, src = bank.warehouse_url, bank.source_url
    simulate(src, 3, scale=SCALE, seed=SEED, bad_rate=BAD_RATE)
    run_flow()
    # A data steward fixes unknown currencies and impossible amounts; the replay resolves those
    # rows as 'replayed'. (The payload holds values as text: json.dumps(default=str).)
    with psycopg.connect(wh) as conn:
        conn.execute(
            """
            update quarantine.transactions
            set payload = payload || jsonb_build_object(
                'currency', case when 'currency_unknown' = any(rules)
                                 then 'GBP' else payload ->> 'currency' end,
                'amount', case when 'amount_out_of_range' = any(rules)
                               then '12.34' else payload ->> 'amount' end)
            where rules <@ array['currency_unknown', 'amount_out_of_range'] and resolution is null
            """
        )
        rules = conn.execute("select rules from quarantine.transactions").fetchall()
        assert replay(conn, "transactions").replayed > 0, rules
    push_into_the_past(wh)
    simulate(src, 1, scale=SCALE, seed=SEED, bad_rate=BAD_RATE)
    # The source touches customer 1 (updated_at moves, nothing else): a repeat version the
    # satellites drop, i.e. one the vault absorbs.
    with psycopg.connect(src) as conn:
        conn.execute(
            "update customers set updated_at = (select max(updated_at) from customers) "
            "+ interval '1 second' where customer_id = 1"
        )
    run_flow()
    # An old alert whose notification is still being retried (its channel failing): it must
    # survive however old it is, or nobody would ever be told.
    with psycopg.connect(wh) as conn:
        (waiting,) = conn.execute(
            "update ops.alerts set notified_at = null, notify_attempts = 1 "
            "where alert_id = (select min(alert_id) from ops.alerts) returning alert_id"
        ).fetchone()
    ledgers = [*LEDGERS, *tables_of(wh, "raw")]
    before = {
        "ledgers": digests(wh, ledgers),
        "layers": digests(wh, tables_of(wh, "silver", "vault", "gold")),
        "resolved": resolved_quarantine(wh),
        "pending": pending_quarantine(wh),
        "old_dq": count(
            wh,
            "select count(*) from ops.dq_results as d join ops.batches as b using (batch_id) "
            "where b.finished_at < now() - interval '30 days'",
        ),
        "new_dq": count(
            wh,
            "select count(*) from ops.dq_results as d join ops.batches as b using (batch_id) "
            "where b.finished_at > now() - interval '1 day'",
        ),
        "runs": count(wh, "select count(*) from ops.pipeline_runs"),
        "audits_new": count(
            wh,
            "select count(*) from ops.audit_results where recorded_at > now() - interval '1 day'",
        ),
        "audits_old": count(
            wh,
            "select count(*) from ops.audit_results where recorded_at < now() - interval '30 days'",
        ),
        "old_alerts": count(
            wh,
            "select count(*) from ops.alerts "
            "where raised_at < now() - interval '30 days' and notified_at is not null",
        ),
        "waiting_alert": waiting,
    }
    with psycopg.connect(wh) as conn:
        before["absorbed"] = conn.execute(ABSORBED_CUSTOMER_VERSIONS).fetchall()
        before["customer_versions"] = conn.execute(
            "select count(*) from silver.customers where is_valid and not is_deleted"
        ).fetchone()[0]
    summary = cleanup(DAYS)
    return bank, before, summary, ledgers


def test_old_resolved_quarantine_rows_go_and_pending_ones_stay(aged):
    bank, before, summary, _ = aged
    wh = bank.warehouse_url
    assert before["resolved"]["transactions"] > 0
    assert before["pending"], "the bad rows of the fresh run and the unfixed ones are pending"
    assert summary.removed["quarantine.transactions"] == before["resolved"]["transactions"]
    assert sum(resolved_quarantine(wh).values()) == 0
    # Pending rows are not in raw yet: every one of them, old or new, is still there.
    assert pending_quarantine(wh) == before["pending"]


def test_old_logs_go_and_recent_ones_stay(aged):
    bank, before, summary, _ = aged
    wh = bank.warehouse_url
    assert before["old_dq"] > 0 and before["new_dq"] > 0
    assert summary.removed["ops.dq_results"] == before["old_dq"]
    assert count(wh, "select count(*) from ops.dq_results") == before["new_dq"]
    # Two runs: the old one goes (the fresh run is its flow's newest).
    assert before["runs"] == 2
    assert summary.removed["ops.pipeline_runs"] == 1
    assert (
        count(
            wh,
            "select count(*) from ops.pipeline_runs where finished_at < now() - interval '30 days'",
        )
        == 0
    )
    assert before["audits_old"] > 0 and before["audits_new"] > 0
    assert summary.removed["ops.audit_results"] == before["audits_old"]
    assert count(wh, "select count(*) from ops.audit_results") == before["audits_new"]
    # Alerts: old notified ones go; one still waiting for its notification stays.
    assert (
        count(
            wh,
            "select count(*) from ops.alerts "
            "where raised_at < now() - interval '30 days' and notified_at is not null",
        )
        == 0
    )
    assert before["old_alerts"] > 0
    assert summary.removed["ops.alerts"] == before["old_alerts"]
    assert (
        count(wh, f"select count(*) from ops.alerts where alert_id = {before['waiting_alert']}")
        == 1
    )
    assert "ops.dq_results" in summary.vacuumed
    assert summary.janitor == "ran"


def test_ledgers_and_raw_are_untouched(aged):
    bank, before, _, ledgers = aged
    assert any(name.startswith("raw.") for name in ledgers)
    assert digests(bank.warehouse_url, ledgers) == before["ledgers"]


def test_absorbed_versions_are_found_and_kept_in_raw(aged):
    """The query that proves a version absorbed finds versions no satellite stored, and not all
    versions (so it tells them apart); cleanup keeps every one of them in raw (see
    docs/retention.md for why)."""
    bank, before, summary, _ = aged
    absorbed = before["absorbed"]
    assert 1 in {customer_id for customer_id, *_ in absorbed}  # the touched customer
    assert len(absorbed) < before["customer_versions"]
    with psycopg.connect(bank.warehouse_url) as conn:
        for customer_id, batch_id, _, updated_at in absorbed:
            assert (
                conn.execute(
                    "select count(*) from raw.customers "
                    "where customer_id::bigint = %s and _batch_id = %s "
                    "and updated_at::timestamptz = %s",
                    (customer_id, batch_id, updated_at),
                ).fetchone()[0]
                == 1
            )
    assert not any(name.startswith("raw.") for name in summary.removed)
    assert any("raw: nothing removed" in note for note in summary.notes)


def test_a_second_cleanup_removes_nothing(aged):
    bank, _, _, _ = aged
    result = CliRunner().invoke(app, ["cleanup", "--days", str(DAYS), "--no-janitor"])
    assert result.exit_code == 0, result.output
    assert "rows removed" in result.output
    assert "raw: nothing removed" in result.output
    again = cleanup(DAYS, janitor=False, vacuum=False)
    assert again.total == 0, again.removed


def test_a_rebuild_from_raw_after_cleanup_gives_the_same_layers(aged):
    """Silver, vault and gold restated from raw in one pass equal what the runs built before the
    cleanup: every table, every column."""
    bank, before, _, _ = aged
    rebuild_everything()
    after = digests(bank.warehouse_url, tables_of(bank.warehouse_url, "silver", "vault", "gold"))
    assert any(name.startswith("vault.sat_") for name in after)
    # gold.dq_scorecard records operations (audits run, rows published per day), which a rebuild
    # does not repeat: left out, as test_incremental leaves it out.
    operational = "gold.dq_scorecard"
    assert operational in after
    after.pop(operational)
    assert after == {k: v for k, v in before["layers"].items() if k != operational}


def test_days_below_one_are_refused(aged):
    with pytest.raises(ValueError, match="at least 1"):
        cleanup(0, janitor=False, vacuum=False)
