"""Retention: `bankdw cleanup --days N`, and the cleanup step of the weekly maintenance flow.

What goes, once older than N days (README "Retention and maintenance" says the same for users):

- **Resolved quarantine rows** (`resolution` is `replayed` or `superseded`, and resolved more than
  N days ago). A replayed row's data is in raw under its replay batch; a superseded row lost to a
  newer version already in raw. **Pending rows are never removed**: they are not in raw yet, and
  the quarantine row is the only copy of what the source sent; removing it would lose data.
- **Ops logs**: `ops.dq_results` (by their batch's end), `ops.alerts` that were notified (an
  alert still waiting for its notification stays whatever its age), `ops.pipeline_runs` that
  ended, `ops.audit_results`. The newest pipeline run of each flow and the newest
  transformation's audit results are kept whatever their age, so `bankdw status` never goes blank
  on a warehouse that has been quiet for N days.

What stays, and why: the ledgers the pipeline's correctness depends on. `ops.batches` (raw's
`_batch_id` points at it, and `published_at` decides which rows SQLMesh's intervals read: a
rebuild reads raw through it), `ops.files` (the loader's memory of which bytes it has loaded:
without it a re-delivered file would load twice), `ops.watermarks` and `ops.delete_sweeps` (where
the next extraction and delete sweep start), `ops.transform_clock` (publication stamps never go
below it), `ops.sqlmesh_runs` (what the last SQLMesh run did), `ops.schema_versions` (the shapes
drift is judged against) and `ops.ignored_files` (one row per name, updated in place: it does not
grow with time).

**Raw: no row is removed.** A raw version the vault "absorbed" is one the satellite pattern
dropped as a repeat: its hashdiff equals the one before it in source order, so no satellite row
has its key and load time (the query in docs/retention.md proves that per row). Such a row still
cannot go without changing a rebuild:
1. silver keeps one row per raw version (grain key, batch_id, load_ts) and is rebuilt from raw;
   a removed version is a silver row the rebuild no longer has;
2. a repeat is a repeat only until a late version lands between it and its predecessor in
   source order (a CRM file delivered late, a quarantine replay of an older version: neither is
   bounded by a watermark). The vault then judges the repeat again and stores it
   (docs/data-vault.md, "Late-arriving data"); had it been removed, the vault would hold the
   late version where the source had moved back, a wrong history. Pending quarantine rows can be
   replayed at any time, so "its neighbours are old and processed" does not rule this out.
So `cleanup` removes nothing from raw, and says so in its summary.

Every delete removes at most `RETENTION_BATCH_ROWS` rows and commits on its own (autocommit), so
cleanup never holds many row locks or a long transaction; it loops until nothing is left, so a
second run removes nothing (idempotent). Afterwards: SQLMesh's janitor (under the SQLMesh lock)
and VACUUM (ANALYZE) of the tables rows were removed from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from flows.quality.replay import quarantine_entities
from flows.settings import Settings, get_settings
from flows.warehouse import connect_warehouse

# What a note about raw says in the summary (and the README).
RAW_KEPT = (
    "raw: nothing removed; a repeat the vault dropped is still a silver row, and a late version "
    "can make it a change again (docs/retention.md)"
)


# The proof that a raw version was absorbed, for customers (the other satellites' sources follow
# the same shape): its silver row (one per raw version: customer_id, batch_id, load_ts) was valid
# and not a delete, and no satellite fed by customers stored it. A satellite row keeps the
# version's batch_id and effective_from (its updated_at), so "stored" is an exact match on them.
# Record tracking (sat_customer_deleted) stores presence changes only: a valid version after a
# present one changes nothing there. docs/retention.md explains why these rows still stay.
ABSORBED_CUSTOMER_VERSIONS = """
    select s.customer_id, s.batch_id, s.load_ts, s.updated_at
    from silver.customers as s
    where s.is_valid and not s.is_deleted
      and not exists (
        select 1 from vault.sat_customer_details as d
        where d.customer_hk = s.customer_hk and d.batch_id = s.batch_id
          and d.effective_from = s.updated_at)
      and not exists (
        select 1 from vault.sat_customer_personal as p
        where p.customer_hk = s.customer_hk and p.batch_id = s.batch_id
          and p.effective_from = s.updated_at)
"""


@dataclass(frozen=True)
class Rule:
    """Which rows of a table are old enough to go: a condition on the table aliased `t`, with
    the cutoff as the parameter %(cutoff)s."""

    table: tuple[str, str]
    condition: str
    why: str


# The ops logs. Each condition names what makes a row a log entry that is finished.
OPS_RULES = (
    Rule(
        ("ops", "dq_results"),
        # No time of its own: its batch's end. A batch older than the cutoff is long closed.
        "t.batch_id in (select b.batch_id from ops.batches as b where b.finished_at < %(cutoff)s)",
        "contract results of batches that ended before the cutoff",
    ),
    Rule(
        ("ops", "alerts"),
        # Only alerts already notified: a pending one would be lost before anyone was told.
        "t.raised_at < %(cutoff)s and t.notified_at is not null",
        "alerts raised before the cutoff and already notified",
    ),
    Rule(
        ("ops", "pipeline_runs"),
        # Ended runs only, and never a flow's newest run: `bankdw status` shows it.
        "t.status <> 'running' and t.finished_at < %(cutoff)s and t.run_id < ("
        "select max(n.run_id) from ops.pipeline_runs as n where n.flow_name = t.flow_name)",
        "pipeline runs that ended before the cutoff (each flow's newest kept)",
    ),
    Rule(
        ("ops", "audit_results"),
        # The newest transformation's results are "the latest audit results" of `bankdw status`.
        "t.recorded_at < %(cutoff)s and t.transformation_id <> ("
        "select n.transformation_id from ops.audit_results as n "
        "order by n.audit_result_id desc limit 1)",
        "audit results recorded before the cutoff (the newest transformation's kept)",
    ),
)

# Resolved quarantine rows: the resolutions the table allows (flows/quality/quarantine.py) are
# replayed and superseded; pending is `resolution is null` and never matches.
QUARANTINE_CONDITION = (
    "t.resolution in ('replayed', 'superseded') and t.resolved_at < %(cutoff)s "
    "and t.quarantined_at < %(cutoff)s"
)


@dataclass
class CleanupSummary:
    """What a cleanup did: rows removed per table (every table looked at, zeros included)."""

    days: int
    cutoff: datetime | None = None
    removed: dict[str, int] = field(default_factory=dict)
    janitor: str = "not asked"
    vacuumed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def delete_in_batches(
    conn: psycopg.Connection,
    table: tuple[str, str],
    condition: str,
    params: dict[str, object],
    batch_rows: int,
) -> int:
    """Delete the rows of `table` matching `condition`, `batch_rows` at a time; returns how many.

    `conn` is in autocommit: each statement is its own transaction, so locks last one batch.
    Rows are picked by ctid inside the same statement (one snapshot): a row a concurrent writer
    changes in between no longer has that ctid and is left for the next run, never deleted
    unchecked.
    """
    target = sql.Identifier(*table)
    statement = sql.SQL(
        "delete from {target} where ctid = any(array("
        "select t.ctid from {target} as t where {condition} limit %(limit)s))"
    ).format(target=target, condition=sql.SQL(condition))  # type: ignore[arg-type]
    removed = 0
    while True:
        count = conn.execute(statement, {**params, "limit": batch_rows}).rowcount
        removed += count
        if count < batch_rows:
            return removed


def existing(conn: psycopg.Connection, table: tuple[str, str]) -> bool:
    name = sql.Identifier(*table).as_string(conn)
    return conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()[0]


def remove_old_rows(
    days: int, settings: Settings | None = None, batch_rows: int | None = None
) -> CleanupSummary:
    """Remove resolved quarantine rows and ops logs older than `days` (no janitor, no vacuum)."""
    if days < 1:
        # 0 would remove what a run just wrote (an alert notified a second ago); a mistake.
        raise ValueError(f"--days must be at least 1, not {days}")
    settings = settings or get_settings()
    batch_rows = batch_rows or settings.retention_batch_rows
    summary = CleanupSummary(days=days)
    with connect_warehouse(settings, autocommit=True) as conn:
        # The cutoff on the database's clock, the one every stamp compared with was written by.
        now = conn.execute("select clock_timestamp()").fetchone()[0]
        summary.cutoff = now - timedelta(days=days)
        params: dict[str, object] = {"cutoff": summary.cutoff}
        for entity in quarantine_entities(conn):
            table = ("quarantine", entity)
            summary.removed[f"quarantine.{entity}"] = delete_in_batches(
                conn, table, QUARANTINE_CONDITION, params, batch_rows
            )
        for rule in OPS_RULES:
            if existing(conn, rule.table):
                summary.removed[".".join(rule.table)] = delete_in_batches(
                    conn, rule.table, rule.condition, params, batch_rows
                )
    summary.notes.append(RAW_KEPT)
    return summary


def vacuum_tables(tables: list[str], settings: Settings | None = None) -> list[str]:
    """VACUUM (ANALYZE) each `schema.table`, one statement each (VACUUM runs outside a
    transaction, and takes SHARE UPDATE EXCLUSIVE: writers go on)."""
    done = []
    with connect_warehouse(settings or get_settings(), autocommit=True) as conn:
        for name in tables:
            table = tuple(name.split(".", 1))
            if existing(conn, table):  # type: ignore[arg-type]
                conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(*table)))
                done.append(name)
    return done


def cleanup(
    days: int | None = None,
    settings: Settings | None = None,
    janitor: bool = True,
    vacuum: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> CleanupSummary:
    """Everything `bankdw cleanup` does: old rows, then SQLMesh's janitor, then VACUUM (ANALYZE)
    of the tables rows were removed from."""
    from flows.maintenance import run_janitor

    settings = settings or get_settings()
    summary = remove_old_rows(settings.retention_days if days is None else days, settings)
    if janitor:
        summary.janitor = run_janitor(settings, on_wait)
    if vacuum:
        summary.vacuumed = vacuum_tables(
            [name for name, count in summary.removed.items() if count], settings
        )
    return summary
