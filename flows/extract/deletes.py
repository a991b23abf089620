"""Finding the rows the source hard-deleted (cancelled pending transactions), at a bounded cost.

Raw keeps every version; a key the source no longer has gets a delete marker (`_is_deleted`,
key columns only) from the batch that noticed. Two ways to notice, inside the batch's
transaction and the source's snapshot:

- `recent`: the keys of rows the source changed within DELETE_WATCH_DAYS of its latest change
  (its own `updated_at`, measured from the watermark: the rows that can still be cancelled, as a
  pending transaction settles within days) are looked up in the source by primary key, in
  chunks. Its cost follows the recent volume, not the table: every run can afford it.
- `full`: every key of the source table is streamed into a temporary table and compared with
  the keys raw holds. It catches a delete of any row, however old, and costs a pass over the
  table's primary-key index: it runs when the last one is older than DELETE_SWEEP_HOURS (or
  when asked, e.g. by the daily deployment).

The guarantee: a delete of a row the source changed within DELETE_WATCH_DAYS of its latest change
is seen by the next run; any delete is seen within DELETE_SWEEP_HOURS (plus one run).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Literal

import psycopg
from psycopg import sql

from flows import load
from flows.extract.streaming import pipe_copy

DeleteMode = Literal["auto", "full", "recent", "off"]
CHUNK_KEYS = 50_000
GONE = sql.Identifier("_gone_keys")


def choose_mode(
    requested: DeleteMode, last_sweep: datetime | None, now: datetime, sweep_hours: float
) -> Literal["full", "recent", "off"]:
    """`auto` sweeps in full when the last full sweep is older than `sweep_hours` (or never ran)."""
    if requested != "auto":
        return requested
    if last_sweep is None or now - last_sweep >= timedelta(hours=sweep_hours):
        return "full"
    return "recent"


def mark_deleted_keys(
    source: psycopg.Connection,
    warehouse: psycopg.Connection,
    entity: str,
    keys: list[load.Column],
    mode: Literal["full", "recent"],
    batch_id: int,
    recent_since: datetime,
) -> int:
    """Write a delete marker for every key live in raw but gone from the source; how many."""
    names = [k.name for k in keys]
    _create_key_table(warehouse, GONE, entity, names)
    if mode == "full":
        _collect_gone_by_sweep(source, warehouse, entity, names)
    else:
        _collect_gone_among_recent(source, warehouse, entity, keys, batch_id, recent_since)
    return _insert_markers(warehouse, entity, names)


def _create_key_table(
    warehouse: psycopg.Connection, table: sql.Identifier, entity: str, names: list[str]
) -> None:
    """A temporary table with the key columns of raw.<entity>, gone at commit."""
    warehouse.execute(
        sql.SQL(
            "create temp table {table} on commit drop as select {keys} from {raw} limit 0"
        ).format(table=table, keys=_listed(names), raw=sql.Identifier("raw", entity))
    )


def _listed(names: list[str], prefix: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.SQL("{}.{}").format(sql.Identifier(prefix), sql.Identifier(n))
        if prefix
        else sql.Identifier(n)
        for n in names
    )


def _equal(names: list[str], left: str, right: str) -> sql.Composable:
    return sql.SQL(" and ").join(
        sql.SQL("{}.{} = {}.{}").format(
            sql.Identifier(left), sql.Identifier(n), sql.Identifier(right), sql.Identifier(n)
        )
        for n in names
    )


def _collect_gone_by_sweep(
    source: psycopg.Connection, warehouse: psycopg.Connection, entity: str, names: list[str]
) -> None:
    """Every source key into a temporary table; the keys raw has and the source lacks: gone."""
    seen = sql.Identifier(f"_source_keys_{entity}")
    raw = sql.Identifier("raw", entity)
    _create_key_table(warehouse, seen, entity, names)
    pipe_copy(
        source,
        warehouse,
        sql.SQL("copy (select {keys} from {table}) to stdout").format(
            keys=_listed(names), table=sql.Identifier(entity)
        ),
        sql.SQL("copy {seen} ({keys}) from stdin").format(seen=seen, keys=_listed(names)),
    )
    # Fresh statistics, or the planner guesses the temp table's size and may pick a nested loop.
    warehouse.execute(sql.SQL("analyze {}").format(seen))
    warehouse.execute(
        sql.SQL(
            "insert into {gone} select distinct {r_keys} from {raw} as r "
            "where not exists (select 1 from {seen} as s where {match})"
        ).format(
            gone=GONE, r_keys=_listed(names, "r"), raw=raw, seen=seen, match=_equal(names, "s", "r")
        )
    )


def _collect_gone_among_recent(
    source: psycopg.Connection,
    warehouse: psycopg.Connection,
    entity: str,
    keys: list[load.Column],
    batch_id: int,
    recent_since: datetime,
) -> None:
    """The keys of rows the source changed after `recent_since`, looked up in it by key."""
    names = [k.name for k in keys]
    lookup = sql.SQL(
        "select {c_keys} from unnest({arrays}) as c({keys}) "
        "where not exists (select 1 from {table} as t where {match})"
    ).format(
        c_keys=_listed(names, "c"),
        arrays=sql.SQL(", ").join(
            sql.SQL("%s::{}[]").format(sql.SQL(k.type))
            for k in keys  # types from the catalog
        ),
        keys=_listed(names),
        table=sql.Identifier(entity),
        match=sql.SQL(" and ").join(
            sql.SQL("t.{k} = c.{k}").format(k=sql.Identifier(n)) for n in names
        ),
    )
    for chunk in _recent_keys(warehouse, entity, names, batch_id, recent_since):
        columns = [list(column) for column in zip(*chunk, strict=True)]
        gone = source.execute(lookup, columns).fetchall()
        if gone:
            with warehouse.cursor() as cur:
                cur.executemany(
                    sql.SQL("insert into {gone} values ({marks})").format(
                        gone=GONE, marks=sql.SQL(", ").join(sql.Placeholder() * len(names))
                    ),
                    gone,
                )


def _recent_keys(
    warehouse: psycopg.Connection,
    entity: str,
    names: list[str],
    batch_id: int,
    since: datetime,
) -> Iterator[list[tuple]]:
    """Distinct live keys raw holds in a version the source stamped after `since` (indexed on
    raw's updated_at): the rows the source changed lately, whenever they were loaded."""
    with warehouse.cursor(name="recent_keys") as cur:
        cur.execute(
            sql.SQL(
                "select distinct {keys} from {raw} "
                "where updated_at >= %s and _batch_id < %s and not _is_deleted"
            ).format(keys=_listed(names), raw=sql.Identifier("raw", entity)),
            (since, batch_id),
        )
        while chunk := cur.fetchmany(CHUNK_KEYS):
            yield chunk


def _insert_markers(warehouse: psycopg.Connection, entity: str, names: list[str]) -> int:
    """A delete marker for each gone key whose latest version in raw is not one already."""
    raw = sql.Identifier("raw", entity)
    cur = warehouse.execute(
        sql.SQL(
            """
            with latest as (
                select distinct on ({r_keys}) {r_keys}, r._is_deleted
                from {raw} as r join (select distinct * from {gone}) as g on {match}
                order by {r_keys}, r._batch_id desc, r._is_deleted desc
            )
            insert into {raw} ({keys}, _is_deleted)
            select {keys}, true from latest where not _is_deleted
            """
        ).format(
            raw=raw,
            gone=GONE,
            keys=_listed(names),
            r_keys=_listed(names, "r"),
            match=_equal(names, "g", "r"),
        )
    )
    return cur.rowcount
