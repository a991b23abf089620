"""Weekly maintenance: SQLMesh's janitor and VACUUM (ANALYZE) of raw.

Two jobs, each safe to run at any time and any number of times:

- SQLMesh's janitor, under the warehouse's SQLMesh lock (it drops expired environments and the
  physical tables no environment uses any more: a plan running beside it would lose tables).
  `staging` is pinned in config.yaml, so the janitor keeps it.
- VACUUM (ANALYZE) of every raw table. Raw is append-only, yet a batch that rolled back (a
  crash, a refused batch, a COPY cut short) leaves its rows behind as dead tuples, which only a
  vacuum reclaims; and the planner's statistics drive delete detection's key lookups and
  silver's reads by batch. Autovacuum does both eventually; a weekly pass at a quiet hour makes
  it certain.

Before both, the maintenance flow runs retention (flows/retention.py, the same as `bankdw cleanup`):
resolved quarantine rows and ops logs older than RETENTION_DAYS; the tables it removed rows from
are vacuumed too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from psycopg import sql

from flows.settings import Settings, get_settings
from flows.warehouse import connect_warehouse

# SQLMesh keeps its state in this schema (config.yaml: state_schema).
STATE_TABLE = "sqlmesh._environments"


@dataclass
class MaintenanceSummary:
    """What a maintenance run did."""

    janitor: str = "not asked"  # "ran", "not asked", or why it did not run
    vacuumed: list[str] = field(default_factory=list)  # tables vacuumed and analysed
    removed: dict[str, int] = field(default_factory=dict)  # rows removed by retention, per table


def sqlmesh_has_state(settings: Settings | None = None) -> bool:
    """Whether SQLMesh ever ran on this warehouse (its state tables exist)."""
    with connect_warehouse(settings or get_settings()) as conn:
        return conn.execute("select to_regclass(%s) is not null", (STATE_TABLE,)).fetchone()[0]


def run_janitor(
    settings: Settings | None = None, on_wait: Callable[[str], None] | None = None
) -> str:
    """SQLMesh's janitor under the SQLMesh lock; returns what happened.

    A warehouse SQLMesh never ran on has nothing to clean: the janitor is not started there,
    since loading SQLMesh would create its state schema only to find it empty.
    """
    from flows.sqlmesh_lock import sqlmesh_lock
    from flows.transform import TransformError, open_context

    settings = settings or get_settings()
    if not sqlmesh_has_state(settings):
        return "skipped: SQLMesh has not run on this warehouse yet"
    with sqlmesh_lock("bankdw maintenance", settings, on_wait):
        context = open_context(settings)
        try:
            # ignore_ttl=False: only what config.yaml's environment_ttl has let expire.
            if not context.run_janitor(ignore_ttl=False):
                raise TransformError("sqlmesh janitor failed: see the log above")
        finally:
            context.close()
    return "ran"


def raw_tables(settings: Settings | None = None) -> list[str]:
    """The tables of the raw schema (none before the first extraction)."""
    with connect_warehouse(settings or get_settings()) as conn:
        rows = conn.execute(
            """
            select c.relname from pg_class as c join pg_namespace as n on n.oid = c.relnamespace
            where n.nspname = 'raw' and c.relkind in ('r', 'p') order by c.relname
            """
        ).fetchall()
    return [name for (name,) in rows]


def vacuum_analyze_raw(settings: Settings | None = None) -> list[str]:
    """VACUUM (ANALYZE) each raw table, one at a time; returns the tables done.

    One statement per table (VACUUM cannot run in a transaction, and one table at a time keeps
    the extra I/O and the locks short: VACUUM takes SHARE UPDATE EXCLUSIVE, which lets loads
    go on). Skips a table dropped since it was listed.
    """
    settings = settings or get_settings()
    done = []
    with connect_warehouse(settings, autocommit=True) as conn:
        for table in raw_tables(settings):
            exists = conn.execute(
                "select to_regclass(%s) is not null",
                (sql.Identifier("raw", table).as_string(conn),),
            ).fetchone()[0]
            if not exists:
                continue
            conn.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier("raw", table)))
            done.append(table)
    return done
