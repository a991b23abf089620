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
from flows.extract.deletes import DeleteMode, choose_mode, mark_deleted_keys
from flows.extract.streaming import pipe_copy
from flows.failures import describe_connection, missing_tables
from flows.quality.contracts import contract_for
from flows.quality.drift import (
    DriftReport,
    SchemaDriftError,
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
    detect_deletes: DeleteMode | bool = "auto",
    flow_run_id: str | None = None,
) -> BatchResult:
    """Load the rows of `entity` changed since the last watermark as one batch. Commits.

    `detect_deletes`: see deletes.py (`auto` sweeps in full when one is due, else checks the
    recent keys; True means `auto`, False `off`).
    """
    if isinstance(detect_deletes, bool):
        detect_deletes = "auto" if detect_deletes else "off"
    settings = get_settings()
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
            raise missing_tables(source, [entity])
        try:
            check_required(entity, columns, contract.required)
        except SchemaDriftError as err:  # say which source: the warehouse may have others
            raise SchemaDriftError(f"the source ({describe_connection(source)}): {err}") from err
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
            bound = now + timedelta(seconds=settings.future_tolerance_seconds)
            copied = _copy_changed_rows(source, warehouse, entity, columns, since, high, bound)
            rows_in = copied - drop_rows_already_held(warehouse, entity, batch_id, bound)
            quarantined, stats = quarantine_batch(warehouse, contract, batch_id, rows_in, now)
            record_dq_results(warehouse, batch_id, entity, stats)
            refuse_if_too_many_rejected(entity, rows_in, quarantined, stats)
            alert_on_implausible_stamps(warehouse, record_source, entity, batch_id, stats)
            # On a table's first load raw holds no key that could have gone: nothing to look for,
            # and raw matches the source as a full sweep would leave it.
            mode = (
                "off"
                if since is None or not keys
                else choose_mode(
                    detect_deletes,
                    load.read_last_sweep(warehouse, record_source, entity),
                    now,
                    settings.delete_sweep_hours,
                )
            )
            deleted = 0
            if mode != "off":
                key_columns = [c for c in columns if c.name in keys]
                deleted = mark_deleted_keys(
                    source,
                    warehouse,
                    entity,
                    key_columns,
                    mode,
                    batch_id,
                    # Recent by the source's own timeline: its latest change, not our clock.
                    (high or since) - timedelta(days=settings.delete_watch_days),
                )
            if since is None or mode == "full":
                load.record_sweep(warehouse, record_source, entity, now, batch_id)
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
