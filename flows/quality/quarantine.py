"""Quarantine: rows that broke a contract, kept whole with every rule they broke.

`quarantine.<entity>` holds the payload as received (jsonb), the rules, the batch that rejected it,
and, once replayed, the batch that finally loaded it (or that a newer version superseded it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg import sql

RAW_METADATA = ("_batch_id", "_loaded_at", "_record_source", "_is_deleted")


@dataclass(frozen=True)
class RejectedRow:
    """A row that broke the contract (payload) or could not be parsed at all (payload {'_line'})."""

    payload: dict
    rules: list[str]
    source_line: int | None = None


def ensure_quarantine_table(conn: psycopg.Connection, entity: str) -> None:
    conn.execute(
        sql.SQL(
            """
            create table if not exists {table} (
                quarantine_id     bigint generated always as identity primary key,
                batch_id          bigint not null,
                record_source     text not null,
                source_file       text,
                source_line       integer,
                payload           jsonb not null,
                rules             text[] not null,
                quarantined_at    timestamptz not null default clock_timestamp(),
                resolution        text check (resolution in ('replayed', 'superseded')),
                resolved_batch_id bigint,
                resolved_at       timestamptz
            )
            """
        ).format(table=sql.Identifier("quarantine", entity))
    )


def insert_rejected(
    conn: psycopg.Connection,
    entity: str,
    batch_id: int,
    record_source: str,
    rows: Iterable[RejectedRow],
    source_file: str | None = None,
) -> int:
    """COPY rejected rows into quarantine.<entity>; returns how many."""
    target = sql.SQL(
        "copy {table} (batch_id, record_source, source_file, source_line, payload, rules) "
        "from stdin"
    ).format(table=sql.Identifier("quarantine", entity))
    count = 0
    with conn.cursor() as cur, cur.copy(target) as copy:
        for row in rows:
            copy.write_row(
                (
                    batch_id,
                    record_source,
                    source_file,
                    row.source_line,
                    json.dumps(row.payload, default=str),
                    row.rules,
                )
            )
            count += 1
    return count


def move_rejected_from_raw(
    conn: psycopg.Connection,
    entity: str,
    batch_id: int,
    keys: tuple[str, ...],
    rejected: list[tuple[tuple[str, ...], list[str]]],
) -> int:
    """Move this batch's rejected rows (by key) from raw into quarantine, in the same transaction.

    Rows streamed straight into raw by COPY are judged on the way; the few that broke a rule are
    taken out again before the transaction commits, so raw never shows them to anyone.
    """
    if not rejected:
        return 0
    key_cols = [sql.Identifier(k) for k in keys]
    conn.execute(
        sql.SQL("create temp table _rejected ({cols}, rules text[]) on commit drop").format(
            cols=sql.SQL(", ").join(sql.SQL("{} text").format(k) for k in key_cols)
        )
    )
    with (
        conn.cursor() as cur,
        cur.copy(
            sql.SQL("copy _rejected ({cols}, rules) from stdin").format(
                cols=sql.SQL(", ").join(key_cols)
            )
        ) as copy,
    ):
        for key, rules in rejected:
            copy.write_row((*key, rules))
    match = sql.SQL(" and ").join(sql.SQL("r.{k}::text = x.{k}").format(k=k) for k in key_cols)
    metadata = sql.SQL(" - ").join(sql.Literal(m) for m in RAW_METADATA)
    moved = conn.execute(
        sql.SQL(
            """
            with moved as (
                delete from {raw} as r using _rejected as x
                where r._batch_id = %(batch)s and {match}
                returning r.*, x.rules as _rules
            )
            insert into {quarantine} (batch_id, record_source, payload, rules)
            select %(batch)s, m._record_source, to_jsonb(m) - '_rules' - {metadata}, m._rules
            from moved as m
            """
        ).format(
            raw=sql.Identifier("raw", entity),
            quarantine=sql.Identifier("quarantine", entity),
            match=match,
            metadata=metadata,
        ),
        {"batch": batch_id},
    ).rowcount
    conn.execute("drop table _rejected")
    if moved != len(rejected):
        raise RuntimeError(
            f"raw.{entity} batch {batch_id}: {len(rejected)} rows rejected, {moved} found to move"
        )
    return moved
