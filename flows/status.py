"""What `bankdw status` reads: the last runs, each watched source's freshness, the open
quarantine, and the audits of the latest transformation. Read only: a warehouse that never ran
(no ops tables yet) has an empty status, and nothing is created."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import psycopg
from psycopg import sql

from flows.alerts import Freshness, source_freshness
from flows.runs import ALIVE
from flows.settings import Settings


@dataclass(frozen=True)
class RunRow:
    """One row of ops.pipeline_runs, with 'crashed' for a running row whose process is gone."""

    run_id: int
    flow_run_id: str | None
    flow_run_name: str | None
    flow_name: str
    status: str
    started_at: datetime
    seconds: float | None
    rows_loaded: int | None
    rows_quarantined: int | None
    rows_deleted: int | None
    silver_rows: int | None
    vault_rows: int | None
    gold_rows: int | None
    dq_score: float | None
    audits_passed: int | None
    audits_failed: int | None
    alerts_raised: int | None
    alerts_sent: int | None
    error: str | None


@dataclass(frozen=True)
class AuditRow:
    model: str
    audit: str
    passed: bool
    bad_rows: int | None


@dataclass
class Status:
    runs: list[RunRow] = field(default_factory=list)  # newest first
    freshness: list[Freshness] = field(default_factory=list)
    quarantine: list[tuple[str, str, int]] = field(default_factory=list)  # entity, rule, open rows
    audits: list[AuditRow] = field(default_factory=list)  # of the latest transformation
    audits_at: datetime | None = None
    audits_flow_run_id: str | None = None

    def problems(self) -> list[str]:
        """Why a monitor should look: the last run failed or crashed, a source is stale."""
        found = []
        if self.runs and self.runs[0].status in ("failed", "crashed"):
            last = self.runs[0]
            found.append(f"the last run ({last.flow_name}, run {last.run_id}) {last.status}")
        for fresh in self.freshness:
            if fresh.stale:
                found.append(
                    f"{fresh.source} is stale: nothing for {fresh.hours_silent:.1f} h, "
                    f"limit {fresh.limit_hours:g} h"
                )
        return found


def _exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (table,)).fetchone()[0]


def last_runs(conn: psycopg.Connection, limit: int) -> list[RunRow]:
    """The newest `limit` runs (a backward scan of the primary key)."""
    if not _exists(conn, "ops.pipeline_runs"):
        return []
    rows = conn.execute(
        f"""
        select run_id, flow_run_id, flow_run_name, flow_name,
               case when status = 'running' and not {ALIVE} then 'crashed' else status end,
               started_at at time zone 'UTC',
               extract(epoch from coalesce(finished_at, clock_timestamp()) - started_at),
               rows_loaded, rows_quarantined, rows_deleted, silver_rows, vault_rows, gold_rows,
               dq_score, audits_passed, audits_failed, alerts_raised, alerts_sent,
               case when status = 'running' and not {ALIVE}
                    then 'the process ended without finishing the run (killed, or lost its '
                         'connection)'
                    else error end
        from ops.pipeline_runs as r
        order by run_id desc
        limit %s
        """,
        (limit,),
    ).fetchall()
    return [
        RunRow(
            *row[:6],
            None if row[6] is None else float(row[6]),
            *row[7:13],
            None if row[13] is None else float(row[13]),
            *row[14:],
        )
        for row in rows
    ]


def open_quarantine(conn: psycopg.Connection) -> list[tuple[str, str, int]]:
    """Rows still pending in quarantine, per entity and rule (a row breaking two rules counts
    under each). Reads the open rows only (the partial index `<entity>__open`)."""
    entities = [
        name
        for (name,) in conn.execute(
            "select table_name from information_schema.tables "
            "where table_schema = 'quarantine' order by table_name"
        ).fetchall()
    ]
    found = []
    for entity in entities:
        rows = conn.execute(
            sql.SQL(
                "select rule, count(*) from {}, unnest(rules) as rule "
                "where resolution is null group by rule order by rule"
            ).format(sql.Identifier("quarantine", entity))
        ).fetchall()
        found += [(entity, rule, count) for rule, count in rows]
    return found


def latest_audits(
    conn: psycopg.Connection,
) -> tuple[list[AuditRow], datetime | None, str | None]:
    """The audits of the newest transformation that ran any (failed first), when they ran and
    in which flow run."""
    if not _exists(conn, "ops.audit_results"):
        return [], None, None
    latest = conn.execute(
        "select transformation_id, flow_run_id, recorded_at at time zone 'UTC' "
        "from ops.audit_results order by audit_result_id desc limit 1"
    ).fetchone()
    if latest is None:
        return [], None, None
    rows = conn.execute(
        "select model, audit, passed, bad_rows from ops.audit_results "
        "where transformation_id = %s order by passed, model, audit",
        (latest[0],),
    ).fetchall()
    return [AuditRow(*row) for row in rows], latest[2], latest[1]


def read_status(conn: psycopg.Connection, settings: Settings, runs: int) -> Status:
    status = Status()
    status.runs = last_runs(conn, runs)
    if _exists(conn, "ops.batches"):
        status.freshness = source_freshness(conn, settings)
    status.quarantine = open_quarantine(conn)
    status.audits, status.audits_at, status.audits_flow_run_id = latest_audits(conn)
    return status
