"""Working with quarantine: what is in it, and replaying rows once a rule or the data is fixed.

A replay re-validates pending quarantined rows against the current contract, in one transaction:
rows that now pass go into raw as a new batch (kind 'replay') and are marked `replayed`; rows a
newer version in raw has overtaken are marked `superseded` (loading them would put an old version
on top of a new one); the rest stay pending. Nothing is copied twice and nothing is dropped.
"""

from __future__ import annotations

import json
from collections import defaultdict
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
        for column in contract.typed:
            if column not in frame:
                frame[column] = None
        verdict = validator.validate(entity, frame)
        unique = {rule.name for rule in contract.checks if rule.kind == "unique"}
        # Versions of one key from different batches repeat the key by nature: which of them
        # to load is decided below, not by the batch rule.
        passing = [
            pos for pos in range(len(pending)) if not set(verdict.broken.get(pos, ())) - unique
        ]
        # What raw already holds in the same or a newer version is superseded, whatever else.
        overtaken = _mark_superseded(conn, entity, contract.keys, [pending[p][0] for p in passing])
        chosen, older = one_version_per_key(
            contract,
            [(pending[p][0], pending[p][2]) for p in passing if pending[p][0] not in overtaken],
        )
        superseded = len(overtaken) + _mark(conn, entity, older, "superseded")
        if not chosen:
            return ReplayResult(
                entity, len(pending), 0, superseded, len(pending) - superseded, None
            )
        record_source = pending[0][1]
        new_batch = load.open_batch(conn, record_source, entity, None, kind="replay")
        replayed = _insert_into_raw(conn, entity, chosen, new_batch)
        load.close_batch(conn, new_batch, replayed, replayed, 0, 0, None)
    return ReplayResult(
        entity,
        len(pending),
        replayed,
        superseded,
        len(pending) - replayed - superseded,
        new_batch,
    )


def one_version_per_key(
    contract, candidates: list[tuple[int, dict]]
) -> tuple[list[int], list[int]]:  # type: ignore[no-untyped-def]
    """(ids to load, ids an identical or newer candidate makes redundant).

    A replay batch, like any batch, holds one version per key: the newest (by `updated_at`, else
    the latest rejected). Identical copies collapse into one. Two different rows claiming to be
    the newest version of a key stay pending: which is right is for the source (a newer version
    supersedes both) or a data steward to say.
    """
    groups: dict[tuple, list[tuple[int, dict]]] = defaultdict(list)
    for qid, payload in candidates:
        groups[tuple(str(payload.get(k)) for k in contract.keys)].append((qid, payload))
    chosen, older = [], []
    for versions in groups.values():
        newest = max(_version_order(p, qid) for qid, p in versions)
        latest = [(qid, p) for qid, p in versions if _version_order(p, qid) == newest]
        if len({json.dumps(p, sort_keys=True) for _, p in latest}) > 1:
            continue
        keep = min(qid for qid, _ in latest)
        chosen.append(keep)
        older.extend(qid for qid, _ in versions if qid != keep)
    return sorted(chosen), sorted(older)


def _version_order(payload: dict, quarantine_id: int) -> tuple:
    stamp = pd.to_datetime(payload.get("updated_at"), utc=True, errors="coerce")
    return (
        (0, pd.Timestamp.min.tz_localize("UTC"), quarantine_id)
        if pd.isna(stamp)
        else (
            1,
            stamp,
            0,
        )
    )


def _mark(conn: psycopg.Connection, entity: str, ids: list[int], resolution: str) -> int:
    if not ids:
        return 0
    return conn.execute(
        sql.SQL(
            "update {} set resolution = %s, resolved_at = clock_timestamp() "
            "where quarantine_id = any(%s) and resolution is null"
        ).format(sql.Identifier("quarantine", entity)),
        (resolution, ids),
    ).rowcount


def _mark_superseded(
    conn: psycopg.Connection, entity: str, keys: tuple[str, ...], candidates: list[int]
) -> set[int]:
    """Mark candidates whose key raw already holds in the same or a newer version; their ids."""
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
    marked = conn.execute(
        sql.SQL(
            """
            update {quarantine} as q
            set resolution = 'superseded', resolved_at = clock_timestamp()
            where q.quarantine_id = any(%s)
              and exists (select 1 from {raw} as r where not r._is_deleted and {match}{newer})
            returning q.quarantine_id
            """
        ).format(
            quarantine=sql.Identifier("quarantine", entity),
            raw=sql.Identifier("raw", entity),
            match=match,
            newer=newer,
        ),
        (candidates,),
    ).fetchall()
    return {qid for (qid,) in marked}


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
