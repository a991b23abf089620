"""Raw-layer loading: the ops schema, raw tables that mirror their source, batches and watermarks.

Raw is append-only: one row per extracted version with `_batch_id`, `_loaded_at`,
`_record_source` and `_is_deleted` (a delete marker carries only the key). Metadata columns take
their values from transaction-local settings, so a COPY stream from the source passes through
untouched (no parsing in Python) and still lands stamped with its batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

METADATA_COLUMNS = ("_batch_id", "_loaded_at", "_record_source", "_is_deleted")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # as format_type() prints it, e.g. "numeric(14,2)"


def apply_ops_schema(conn: psycopg.Connection) -> None:
    """Create or upgrade the raw and ops schemas and bookkeeping tables (idempotent).

    Applied only when ops.sql changed since it was last applied: its `alter table` and
    `create index` statements lock ops.batches even when there is nothing to do, and would
    queue every run behind any open load transaction.
    """
    ddl = (SQL_DIR / "warehouse" / "ops.sql").read_text()
    digest = hashlib.sha256(ddl.encode()).hexdigest()
    if _ops_schema_is(conn, digest):
        return
    # Concurrent extraction tasks all get here: `create schema if not exists` is not race-free.
    conn.execute("select pg_advisory_xact_lock(hashtext('bankdw:ops-ddl'))")
    if _ops_schema_is(conn, digest):
        return
    conn.execute(ddl)
    conn.execute(
        "create table if not exists ops.schema_applied "
        "(sha256 text primary key, applied_at timestamptz not null default clock_timestamp())"
    )
    # On conflict: a concurrent first apply may have won (the advisory lock does not refresh this
    # session's view of the catalog, so the check above can miss its brand-new table).
    conn.execute(
        "insert into ops.schema_applied (sha256) values (%s) on conflict do nothing", (digest,)
    )


def _ops_schema_is(conn: psycopg.Connection, digest: str) -> bool:
    exists = conn.execute("select to_regclass('ops.schema_applied') is not null").fetchone()[0]
    return bool(
        exists
        and conn.execute("select 1 from ops.schema_applied where sha256 = %s", (digest,)).fetchone()
    )


def table_columns(conn: psycopg.Connection, schema: str, table: str) -> list[Column]:
    rows = conn.execute(
        """
        select a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
        order by a.attnum
        """,
        (schema, table),
    ).fetchall()
    return [Column(name, type_) for name, type_ in rows]


def primary_key_columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        """
        select a.attname
        from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any (i.indkey)
        where i.indrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass and i.indisprimary
        order by array_position(i.indkey::int2[], a.attnum)
        """,
        (schema, table),
    ).fetchall()
    return [name for (name,) in rows]


def ensure_raw_table(conn: psycopg.Connection, entity: str, columns: list[Column]) -> None:
    """Create raw.<entity> mirroring the source columns, plus load metadata (idempotent).

    No constraints beyond the metadata: raw keeps whatever the source sent; silver judges it.
    """
    source_cols = [
        sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(c.type)) for c in columns
    ]
    metadata = [
        sql.SQL("_batch_id bigint not null default current_setting('bankdw.batch_id')::bigint"),
        sql.SQL("_loaded_at timestamptz not null default now()"),
        sql.SQL("_record_source text not null default current_setting('bankdw.record_source')"),
        sql.SQL("_is_deleted boolean not null default false"),
    ]
    conn.execute(
        sql.SQL("create table if not exists {}.{} ({})").format(
            sql.Identifier("raw"),
            sql.Identifier(entity),
            sql.SQL(", ").join(source_cols + metadata),
        )
    )
    _add_new_columns(conn, entity, columns)
    conn.execute(
        sql.SQL("create index if not exists {} on {}.{} (_batch_id)").format(
            sql.Identifier(f"{entity}__batch"), sql.Identifier("raw"), sql.Identifier(entity)
        )
    )
    if any(c.name == "updated_at" for c in columns):
        # Delete detection looks up the rows the source changed lately (extract/deletes.py).
        conn.execute(
            sql.SQL("create index if not exists {} on {}.{} (updated_at)").format(
                sql.Identifier(f"{entity}__updated_at"),
                sql.Identifier("raw"),
                sql.Identifier(entity),
            )
        )


def _add_new_columns(conn: psycopg.Connection, entity: str, columns: list[Column]) -> None:
    """Schema drift: a column the source gained is kept, with the source's type."""
    present = {c.name for c in table_columns(conn, "raw", entity)}
    for column in columns:
        if column.name not in present:
            conn.execute(
                sql.SQL("alter table {} add column {} {}").format(
                    sql.Identifier("raw", entity), sql.Identifier(column.name), sql.SQL(column.type)
                )
            )


def open_batch(
    conn: psycopg.Connection,
    source: str,
    entity: str,
    watermark_from: datetime | None,
    flow_run_id: str | None = None,
    kind: str = "extract",
    source_file: str | None = None,
) -> int:
    """Register a batch inside the caller's transaction and stamp the session with it.

    The row is written as 'committed': if the transaction rolls back, the row goes with it.
    """
    (batch_id,) = conn.execute(
        """
        insert into ops.batches
            (source, entity, status, kind, watermark_from, started_at, flow_run_id, source_file)
        values (%s, %s, 'committed', %s, %s, clock_timestamp(), %s, %s)
        returning batch_id
        """,
        (source, entity, kind, watermark_from, flow_run_id, source_file),
    ).fetchone()
    conn.execute("select set_config('bankdw.batch_id', %s, true)", (str(batch_id),))
    conn.execute("select set_config('bankdw.record_source', %s, true)", (source,))
    return batch_id


def close_batch(
    conn: psycopg.Connection,
    batch_id: int,
    rows_in: int,
    rows_loaded: int,
    rows_quarantined: int,
    rows_deleted: int,
    watermark_to: datetime | None,
) -> None:
    conn.execute(
        """
        update ops.batches
        set rows_in = %s, rows_loaded = %s, rows_quarantined = %s, rows_deleted = %s,
            watermark_to = %s, finished_at = clock_timestamp()
        where batch_id = %s
        """,
        (rows_in, rows_loaded, rows_quarantined, rows_deleted, watermark_to, batch_id),
    )


def record_failed_batch(
    source: str,
    entity: str,
    error: Exception,
    flow_run_id: str | None = None,
    source_file: str | None = None,
) -> int:
    """Record a failed attempt in its own transaction (the batch's own one rolled back).

    A batch refused by its contract keeps its per-rule results, and both it and schema drift
    raise an alert: they need a person, not a retry.
    """
    from flows.quality.drift import SchemaDriftError
    from flows.quality.results import BatchRejectedError, raise_alert, record_dq_results
    from flows.warehouse import connect_warehouse

    message = f"{type(error).__name__}: {error}"
    with connect_warehouse() as conn, conn.transaction():
        apply_ops_schema(conn)
        (batch_id,) = conn.execute(
            """
            insert into ops.batches
                (source, entity, status, started_at, flow_run_id, error, source_file)
            values (%s, %s, 'failed', clock_timestamp(), %s, %s, %s)
            returning batch_id
            """,
            (source, entity, flow_run_id, message[:2000], source_file),
        ).fetchone()
        if isinstance(error, BatchRejectedError):
            record_dq_results(conn, batch_id, entity, error.stats)
        if isinstance(error, BatchRejectedError | SchemaDriftError):
            kind = "batch_refused" if isinstance(error, BatchRejectedError) else "schema_drift"
            raise_alert(conn, "critical", source, entity, batch_id, str(error), kind, flow_run_id)
    return batch_id


def read_watermark(conn: psycopg.Connection, source: str, entity: str) -> datetime | None:
    row = conn.execute(
        "select high_watermark from ops.watermarks where source = %s and entity = %s",
        (source, entity),
    ).fetchone()
    return row[0] if row else None


def advance_watermark(
    conn: psycopg.Connection, source: str, entity: str, high_watermark: datetime, batch_id: int
) -> None:
    conn.execute(
        """
        insert into ops.watermarks (source, entity, high_watermark, batch_id)
        values (%s, %s, %s, %s)
        on conflict (source, entity) do update
        set high_watermark = excluded.high_watermark, batch_id = excluded.batch_id,
            updated_at = clock_timestamp()
        """,
        (source, entity, high_watermark, batch_id),
    )


def read_last_sweep(conn: psycopg.Connection, source: str, entity: str) -> datetime | None:
    """When deletes were last looked for across the whole table (see extract/deletes.py)."""
    row = conn.execute(
        "select swept_at from ops.delete_sweeps where source = %s and entity = %s",
        (source, entity),
    ).fetchone()
    return row[0] if row else None


def record_sweep(
    conn: psycopg.Connection, source: str, entity: str, at: datetime, batch_id: int
) -> None:
    conn.execute(
        """
        insert into ops.delete_sweeps (source, entity, swept_at, batch_id) values (%s, %s, %s, %s)
        on conflict (source, entity) do update
        set swept_at = excluded.swept_at, batch_id = excluded.batch_id
        """,
        (source, entity, at, batch_id),
    )


def lock_entity(conn: psycopg.Connection, source: str, entity: str) -> None:
    """Serialise loads of one entity: two runs must not read the same watermark."""
    conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"bankdw:{source}:{entity}",))
