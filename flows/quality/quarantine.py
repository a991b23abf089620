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
    # `bankdw status` counts the open rows by rule: an index of them alone keeps that cost to
    # what is open, not to every row ever quarantined. Checked first (a catalog lookup): `create
    # index if not exists` would lock the table on every batch.
    index = f"{entity}__open"
    exists = conn.execute(
        "select 1 from pg_indexes where schemaname = 'quarantine' and indexname = %s", (index,)
    ).fetchone()
    if exists is None:
        conn.execute(
            sql.SQL(
                "create index if not exists {} on {} (batch_id) where resolution is null"
            ).format(sql.Identifier(index), sql.Identifier("quarantine", entity))
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
