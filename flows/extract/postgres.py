"""Incremental extraction of one OLTP table into raw, by an `updated_at` watermark.

Rows stream from `COPY (SELECT ...) TO STDOUT` on the source straight into
`COPY raw.<table> FROM STDIN` on the warehouse, block by block: no table is ever held in memory.
The rows, the batch record, the delete markers and the new watermark commit in one warehouse
transaction, so a crash at any point leaves either the whole batch or nothing.

Deletes: the source hard-deletes cancelled transactions. Its keys (only the keys) are streamed the
same way into a temporary table and compared with the keys raw holds as live; every key that has
vanished gets a delete marker. This costs one pass over the source's primary-key index per table,
which is cheap next to the data itself, and catches deletes of any row, not only the ones a
convention would predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from flows import load

COPY_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class BatchResult:
    entity: str
    batch_id: int
    rows_loaded: int
    rows_deleted: int
    watermark_from: datetime | None
    watermark_to: datetime | None
    seconds: float


def extract_table(
    source: psycopg.Connection,
    warehouse: psycopg.Connection,
    entity: str,
    record_source: str,
    detect_deletes: bool = True,
    flow_run_id: str | None = None,
) -> BatchResult:
    """Load the rows of `entity` changed since the last watermark as one batch. Commits."""
    import time

    started = time.perf_counter()
    # One consistent snapshot of the source for data, high watermark and keys.
    source.execute("begin isolation level repeatable read read only")
    try:
        columns = load.table_columns(source, "public", entity)
        if not columns:
            raise LookupError(f"source table public.{entity} does not exist")
        keys = load.primary_key_columns(source, "public", entity)
        with warehouse.transaction():
            load.apply_ops_schema(warehouse)
            load.lock_entity(warehouse, record_source, entity)
            load.ensure_raw_table(warehouse, entity, columns)
            since = load.read_watermark(warehouse, record_source, entity)
            batch_id = load.open_batch(warehouse, record_source, entity, since, flow_run_id)
            high = _high_watermark(source, entity, since)
            rows = _copy_changed_rows(source, warehouse, entity, columns, since, high)
            deleted = (
                _mark_deleted_keys(source, warehouse, entity, keys)
                if detect_deletes and keys
                else 0
            )
            load.close_batch(warehouse, batch_id, rows, deleted, high or since)
            if high is not None:
                load.advance_watermark(warehouse, record_source, entity, high, batch_id)
    finally:
        source.execute("rollback")
    return BatchResult(
        entity, batch_id, rows, deleted, since, high or since, time.perf_counter() - started
    )


def _high_watermark(
    source: psycopg.Connection, entity: str, since: datetime | None
) -> datetime | None:
    query = sql.SQL("select max(updated_at) from {}").format(sql.Identifier(entity))
    if since is not None:
        query = sql.SQL("{} where updated_at > %s").format(query)
        return source.execute(query, (since,)).fetchone()[0]
    return source.execute(query).fetchone()[0]


def _copy_changed_rows(
    source: psycopg.Connection,
    warehouse: psycopg.Connection,
    entity: str,
    columns: list[load.Column],
    since: datetime | None,
    until: datetime | None,
) -> int:
    if until is None:
        return 0
    column_list = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    where = sql.SQL("updated_at <= {until}").format(until=sql.Literal(until))
    if since is not None:
        where = sql.SQL("updated_at > {since} and {rest}").format(
            since=sql.Literal(since), rest=where
        )
    copy_out = sql.SQL("copy (select {cols} from {table} where {where}) to stdout").format(
        cols=column_list, table=sql.Identifier(entity), where=where
    )
    copy_in = sql.SQL("copy {schema}.{table} ({cols}) from stdin").format(
        schema=sql.Identifier("raw"), table=sql.Identifier(entity), cols=column_list
    )
    return pipe_copy(source, warehouse, copy_out, copy_in)


def pipe_copy(
    source: psycopg.Connection,
    target: psycopg.Connection,
    copy_out: sql.Composable,
    copy_in: sql.Composable,
) -> int:
    """Stream COPY text from one connection into another; returns the rows written."""
    with source.cursor() as out_cur, target.cursor() as in_cur:
        with out_cur.copy(copy_out) as reader, in_cur.copy(copy_in) as writer:
            for block in reader:
                writer.write(block)
        return in_cur.rowcount


def _mark_deleted_keys(
    source: psycopg.Connection, warehouse: psycopg.Connection, entity: str, keys: list[str]
) -> int:
    """Write a delete marker for every key live in raw but gone from the source."""
    key_ids = [sql.Identifier(k) for k in keys]
    key_list = sql.SQL(", ").join(key_ids)
    seen = sql.Identifier(f"_source_keys_{entity}")
    raw_table = sql.SQL("{}.{}").format(sql.Identifier("raw"), sql.Identifier(entity))
    warehouse.execute(
        sql.SQL(
            "create temp table {seen} on commit drop as select {keys} from {raw} limit 0"
        ).format(seen=seen, keys=key_list, raw=raw_table)
    )
    pipe_copy(
        source,
        warehouse,
        sql.SQL("copy (select {keys} from {table}) to stdout").format(
            keys=key_list, table=sql.Identifier(entity)
        ),
        sql.SQL("copy {seen} ({keys}) from stdin").format(seen=seen, keys=key_list),
    )
    join_on = sql.SQL(" and ").join(sql.SQL("s.{k} = l.{k}").format(k=k) for k in key_ids)
    latest_cols = sql.SQL(", ").join(sql.SQL("l.{}").format(k) for k in key_ids)
    cur = warehouse.execute(
        sql.SQL(
            """
            insert into {raw} ({keys}, _is_deleted)
            select {latest_cols}, true
            from (
                select distinct on ({keys}) {keys}, _is_deleted
                from {raw}
                order by {keys}, _batch_id desc, _is_deleted desc
            ) as l
            where not l._is_deleted
              and not exists (select 1 from {seen} as s where {join_on})
            """
        ).format(raw=raw_table, keys=key_list, latest_cols=latest_cols, seen=seen, join_on=join_on)
    )
    return cur.rowcount
