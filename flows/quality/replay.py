"""Working with quarantine: what is in it, and replaying rows once a rule or the data is fixed.

A replay re-validates pending quarantined rows against the current contract, in one transaction:
rows that now pass go into raw as a new batch (kind 'replay') and are marked `replayed`; rows a
newer version in raw has overtaken are marked `superseded` (loading them would put an old version
on top of a new one); the rest stay pending. Nothing is copied twice and nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import psycopg
from psycopg import sql

from flows import load
from flows.quality.quarantine import RAW_METADATA


@dataclass(frozen=True)
class ReplayResult:
    entity: str
    checked: int
    replayed: int
    superseded: int
    still_failing: int
    batch_id: int | None


def quarantine_entities(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "select table_name from information_schema.tables where table_schema = 'quarantine' "
        "order by table_name"
    ).fetchall()
    return [name for (name,) in rows]


def counts_by_rule(conn: psycopg.Connection, entity: str) -> list[tuple[str, str, int]]:
    """(rule, state, rows) where state is pending, replayed or superseded."""
    return conn.execute(
        sql.SQL(
            "select rule, coalesce(resolution, 'pending') as state, count(*) "
            "from {}, unnest(rules) as rule group by 1, 2 order by 1, 2"
        ).format(sql.Identifier("quarantine", entity))
    ).fetchall()


def samples(conn: psycopg.Connection, entity: str, limit: int = 5) -> list[tuple]:
    """The latest pending rows: id, batch, file and line, rules, payload."""
    return conn.execute(
        sql.SQL(
            "select quarantine_id, batch_id, source_file, source_line, rules, payload::text "
            "from {} where resolution is null order by quarantine_id desc limit %s"
        ).format(sql.Identifier("quarantine", entity)),
        (limit,),
    ).fetchall()


def replay(
    conn: psycopg.Connection, entity: str, batch_id: int | None = None, validator=None
) -> ReplayResult:  # type: ignore[no-untyped-def]
    """Move the pending rows of `entity` (optionally of one batch) that now pass into raw."""
    from flows.quality.contracts import contract_for
    from flows.quality.validate import get_validator
    from flows.settings import get_settings

    contract = contract_for(entity)
    validator = validator or get_validator(get_settings().data_dir / "gx")
    quarantine = sql.Identifier("quarantine", entity)
    with conn.transaction():
        load.lock_entity(conn, "quarantine", entity)
        pending = conn.execute(
            sql.SQL(
                "select quarantine_id, record_source, payload from {} "
                "where resolution is null and (%(batch)s::bigint is null or batch_id = %(batch)s) "
                "order by quarantine_id for update"
            ).format(quarantine),
            {"batch": batch_id},
        ).fetchall()
        if not pending:
            return ReplayResult(entity, 0, 0, 0, 0, None)
        frame = pd.DataFrame(
            [{k: None if v is None else str(v) for k, v in p.items()} for _, _, p in pending]
        )
        for column in contract.required:
            if column not in frame:
                frame[column] = None
        verdict = validator.validate(entity, frame)
        passing = [qid for pos, (qid, _, _) in enumerate(pending) if pos not in verdict.broken]
        if not passing:
            return ReplayResult(entity, len(pending), 0, 0, len(pending), None)

        superseded = _mark_superseded(conn, entity, contract.keys, passing)
        record_source = pending[0][1]
        new_batch = load.open_batch(conn, record_source, entity, None, kind="replay")
        replayed = _insert_into_raw(conn, entity, passing, new_batch)
        load.close_batch(conn, new_batch, len(passing), replayed, 0, 0, None)
    return ReplayResult(
        entity, len(pending), replayed, superseded, len(pending) - len(passing), new_batch
    )


def _mark_superseded(
    conn: psycopg.Connection, entity: str, keys: tuple[str, ...], candidates: list[int]
) -> int:
    """Mark candidates whose key raw already holds in the same or a newer version."""
    raw_columns = {c.name for c in load.table_columns(conn, "raw", entity)}
    match = sql.SQL(" and ").join(
        sql.SQL("r.{k}::text = q.payload ->> {name}").format(
            k=sql.Identifier(k), name=sql.Literal(k)
        )
        for k in keys
    )
    newer = (
        sql.SQL(" and r.updated_at >= (q.payload ->> 'updated_at')::timestamptz")
        if "updated_at" in raw_columns and "updated_at" not in keys
        else sql.SQL("")
    )
    return conn.execute(
        sql.SQL(
            """
            update {quarantine} as q
            set resolution = 'superseded', resolved_at = clock_timestamp()
            where q.quarantine_id = any(%s)
              and exists (select 1 from {raw} as r where not r._is_deleted and {match}{newer})
            """
        ).format(
            quarantine=sql.Identifier("quarantine", entity),
            raw=sql.Identifier("raw", entity),
            match=match,
            newer=newer,
        ),
        (candidates,),
    ).rowcount


def _insert_into_raw(
    conn: psycopg.Connection, entity: str, candidates: list[int], batch_id: int
) -> int:
    """Insert the candidates not superseded into raw (metadata from the batch) and mark them."""
    columns = [
        sql.Identifier(c.name)
        for c in load.table_columns(conn, "raw", entity)
        if c.name not in RAW_METADATA
    ]
    column_list = sql.SQL(", ").join(columns)
    return conn.execute(
        sql.SQL(
            """
            with chosen as (
                update {quarantine} as q
                set resolution = 'replayed', resolved_batch_id = %(batch)s,
                    resolved_at = clock_timestamp()
                where q.quarantine_id = any(%(ids)s) and q.resolution is null
                returning q.payload || jsonb_build_object(
                    '_source_file', q.source_file, '_source_line', q.source_line) as payload
            )
            insert into {raw} ({cols})
            select {picked}
            from chosen, jsonb_populate_record(null::{raw}, chosen.payload) as p
            """
        ).format(
            quarantine=sql.Identifier("quarantine", entity),
            raw=sql.Identifier("raw", entity),
            cols=column_list,
            picked=sql.SQL(", ").join(sql.SQL("p.{}").format(c) for c in columns),
        ),
        {"batch": batch_id, "ids": candidates},
    ).rowcount
