"""Incremental extraction of one OLTP table into raw, by an `updated_at` watermark, through its
data contract.

Rows stream from `COPY (SELECT ...) TO STDOUT` on the source straight into
`COPY raw.<table> FROM STDIN` on the warehouse, unparsed: no table is ever held in memory. Then,
still inside the batch's transaction, the table's contract (its GX expectations compiled to SQL,
see quality/sql_contract.py) judges the batch where it lies, and one statement moves the rows that
broke a rule into `quarantine.<table>`. The rows, the quarantined rows, the batch record, the
contract results, the delete markers and the new watermark commit in one warehouse transaction:
a crash at any point leaves the whole batch or nothing, and a refused batch (too many bad rows)
leaves nothing but its failure record.

Deletes: the source hard-deletes cancelled transactions. Its keys (only the keys) are streamed the
same way into a temporary table and compared with the keys raw holds as live; every key that has
vanished gets a delete marker. One pass over the source's primary-key index per table is cheap
next to the data, and catches deletes of any row, not only the ones a convention would predict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from flows import load
from flows.quality.contracts import contract_for
from flows.quality.drift import (
    DriftReport,
    check_required,
    check_types_unchanged,
    record_schema,
)
from flows.quality.quarantine import ensure_quarantine_table
from flows.quality.results import (
    RuleStat,
    raise_alert,
    record_dq_results,
    refuse_if_too_many_rejected,
)
from flows.quality.sql_contract import quarantine_batch
from flows.settings import get_settings


@dataclass(frozen=True)
class BatchResult:
    entity: str
    batch_id: int
    rows_in: int
    rows_loaded: int
    rows_quarantined: int
    rows_deleted: int
    watermark_from: datetime | None
    watermark_to: datetime | None
    seconds: float
    drift: str | None = None
    source_file: str | None = None


def extract_table(
    source: psycopg.Connection,
    warehouse: psycopg.Connection,
    entity: str,
    record_source: str,
    detect_deletes: bool = True,
    flow_run_id: str | None = None,
) -> BatchResult:
    """Load the rows of `entity` changed since the last watermark as one batch. Commits."""
    contract = contract_for(entity)
    started = time.perf_counter()
    # One consistent snapshot of the source for data, high watermark and keys.
    source.execute("begin isolation level repeatable read read only")
    try:
        # The source's clock at the snapshot: the watermark never passes it, and rows stamped
        # beyond it plus the tolerance are implausible (judged against the same instant).
        now = source.execute("select now()").fetchone()[0]
        columns = load.table_columns(source, "public", entity)
        if not columns:
            raise LookupError(f"source table public.{entity} does not exist")
        check_required(entity, columns, contract.required)
        keys = load.primary_key_columns(source, "public", entity) or list(contract.keys)
        # In a short transaction of its own: its DDL lock, held to the end of a load
        # transaction, would make concurrent table loads wait for each other.
        with warehouse.transaction():
            load.apply_ops_schema(warehouse)
        with warehouse.transaction():
            load.lock_entity(warehouse, record_source, entity)
            check_types_unchanged(entity, columns, load.table_columns(warehouse, "raw", entity))
            load.ensure_raw_table(warehouse, entity, columns)
            ensure_quarantine_table(warehouse, entity)
            since = load.read_watermark(warehouse, record_source, entity)
            batch_id = load.open_batch(warehouse, record_source, entity, since, flow_run_id)
            drift = record_schema(warehouse, record_source, entity, columns, batch_id)
            high = _high_watermark(source, entity, since, now)
            bound = now + timedelta(seconds=get_settings().future_tolerance_seconds)
            copied = _copy_changed_rows(source, warehouse, entity, columns, since, high, bound)
            rows_in = copied - drop_rows_already_held(warehouse, entity, batch_id, bound)
            quarantined, stats = quarantine_batch(warehouse, contract, batch_id, rows_in, now)
            record_dq_results(warehouse, batch_id, entity, stats)
            refuse_if_too_many_rejected(entity, rows_in, quarantined, stats)
            alert_on_implausible_stamps(warehouse, record_source, entity, batch_id, stats)
            # On a table's first load raw holds no key that could have gone since: skip the pass.
            first_load = since is None
            deleted = (
                _mark_deleted_keys(source, warehouse, entity, keys)
                if detect_deletes and keys and not first_load
                else 0
            )
            load.close_batch(
                warehouse,
                batch_id,
                rows_in,
                rows_in - quarantined,
                quarantined,
                deleted,
                high or since,
            )
            if high is not None:
                load.advance_watermark(warehouse, record_source, entity, high, batch_id)
    finally:
        # A dropped source connection is already closed: rolling it back would raise a second
        # error ("the connection is closed") that hides the real one in ops.batches.
        if not source.closed:
            source.execute("rollback")
    return BatchResult(
        entity,
        batch_id,
        rows_in,
        rows_in - quarantined,
        quarantined,
        deleted,
        since,
        high or since,
        time.perf_counter() - started,
        _drift_note(drift),
    )


def _drift_note(drift: DriftReport) -> str | None:
    return drift.describe() if drift.changed and drift.version > 1 else None


def _high_watermark(
    source: psycopg.Connection, entity: str, since: datetime | None, now: datetime
) -> datetime | None:
    """The newest `updated_at` after `since`, never past the source's clock: a row stamped in
    the future must not carry the watermark past rows the source has yet to write."""
    query = sql.SQL("select max(updated_at) from {} where updated_at <= %s").format(
        sql.Identifier(entity)
    )
    if since is not None:
        query = sql.SQL("{} and updated_at > %s").format(query)
        return source.execute(query, (now, since)).fetchone()[0]
    return source.execute(query, (now,)).fetchone()[0]


def _copy_changed_rows(
    source: psycopg.Connection,
    warehouse: psycopg.Connection,
    entity: str,
    columns: list[load.Column],
    since: datetime | None,
    until: datetime | None,
    implausible_after: datetime,
) -> int:
    """Pipe the rows changed in (since, until] into raw, and the rows no watermark can take
    (stamped after `implausible_after`, or not stamped: the contract quarantines those);
    returns how many."""
    column_list = sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    # COPY takes no parameters: the bounds are quoted as literals by psycopg.
    where = sql.SQL("(updated_at > {bound} or updated_at is null)").format(
        bound=sql.Literal(implausible_after)
    )
    if until is not None:
        changed = sql.SQL("updated_at <= {until}").format(until=sql.Literal(until))
        if since is not None:
            changed = sql.SQL("updated_at > {since} and {rest}").format(
                since=sql.Literal(since), rest=changed
            )
        where = sql.SQL("({changed}) or {rest}").format(changed=changed, rest=where)
    copy_out = sql.SQL("copy (select {cols} from {table} where {where}) to stdout").format(
        cols=column_list, table=sql.Identifier(entity), where=where
    )
    copy_in = sql.SQL("copy {table} ({cols}) from stdin").format(
        table=sql.Identifier("raw", entity), cols=column_list
    )
    return pipe_copy(source, warehouse, copy_out, copy_in)


def drop_rows_already_held(
    warehouse: psycopg.Connection, entity: str, batch_id: int, implausible_after: datetime
) -> int:
    """Remove from this batch the rows stamped implausibly (or not at all) that quarantine
    already holds unchanged.

    No watermark passes such a row, so every run reads it again: quarantine keeps one copy of
    each (whole payloads compared), and a changed row is a new version to judge.
    """
    return warehouse.execute(
        sql.SQL(
            """
            delete from {raw} as r
            where r._batch_id = %(batch)s and (r.updated_at > %(bound)s or r.updated_at is null)
              and exists (
                select 1 from {quarantine} as q
                where q.resolution is null
                  and q.payload = to_jsonb(r) - {metadata}
              )
            """
        ).format(
            raw=sql.Identifier("raw", entity),
            quarantine=sql.Identifier("quarantine", entity),
            metadata=sql.SQL("array[{}]").format(
                sql.SQL(", ").join(sql.Literal(m) for m in load.METADATA_COLUMNS)
            ),
        ),
        {"batch": batch_id, "bound": implausible_after},
    ).rowcount


def alert_on_implausible_stamps(
    warehouse: psycopg.Connection,
    record_source: str,
    entity: str,
    batch_id: int,
    stats: dict[str, RuleStat],
) -> None:
    """A row from the far future is a source fault a person must look at."""
    stat = stats.get("updated_at_in_future")
    if stat is not None and stat.failed:
        raise_alert(
            warehouse,
            "warning",
            record_source,
            entity,
            batch_id,
            f"{entity}: {stat.failed} row(s) stamped later than the source's clock plus "
            f"{get_settings().future_tolerance_seconds} s were quarantined (rule "
            "updated_at_in_future); the watermark did not follow them. Fix the source's "
            "updated_at; `bankdw quarantine list --entity " + entity + "` shows them",
        )


def pipe_copy(
    source: psycopg.Connection,
    target: psycopg.Connection,
    copy_out: sql.Composable,
    copy_in: sql.Composable,
) -> int:
    """Stream COPY data from one connection into another; returns the rows written."""
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
    raw_table = sql.Identifier("raw", entity)
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
    # Fresh statistics, or the planner guesses the temp table's size and may pick a nested loop.
    warehouse.execute(sql.SQL("analyze {}").format(seen))
    gone_on = sql.SQL(" and ").join(sql.SQL("s.{k} = r.{k}").format(k=k) for k in key_ids)
    latest_on = sql.SQL(" and ").join(sql.SQL("g.{k} = r.{k}").format(k=k) for k in key_ids)
    # First the keys raw has and the source lacks (one hash anti-join), then, for those few
    # only, whether their latest version is already a delete marker.
    cur = warehouse.execute(
        sql.SQL(
            """
            with gone as (
                select distinct {r_keys} from {raw} as r
                where not exists (select 1 from {seen} as s where {gone_on})
            ),
            latest as (
                select distinct on ({r_keys}) {r_keys}, r._is_deleted
                from {raw} as r join gone as g on {latest_on}
                order by {r_keys}, r._batch_id desc, r._is_deleted desc
            )
            insert into {raw} ({keys}, _is_deleted)
            select {keys}, true from latest where not _is_deleted
            """
        ).format(
            raw=raw_table,
            keys=key_list,
            seen=seen,
            gone_on=gone_on,
            latest_on=latest_on,
            r_keys=sql.SQL(", ").join(sql.SQL("r.{}").format(k) for k in key_ids),
        )
    )
    return cur.rowcount
