"""Which raw batches the transformation may see, and the clock it runs on.

Raw rows carry `_loaded_at`, the time their load *started*. Selecting intervals by it loses rows:
a load that starts at 23:59 and commits at 00:01 lands in a day a transform at 00:00 already
closed, and an orchestrator whose clock runs ahead of the database's closes days early. So the
models never read `_loaded_at` for intervals. Each transformation first *publishes* every batch
that has committed since the last one, stamping it with one instant T taken from the warehouse's
clock, and then runs SQLMesh with execution time T (plus a millisecond, for SQLMesh's
millisecond intervals). T never goes back: it is at least the last execution time and the end of
every interval SQLMesh has recorded (whoever ran it, with whatever clock). A batch that commits
later gets a later T and therefore an interval still open. Silver reads `published_at` as the
row's load time (`load_ts`), so the vault's load times are publication times.

Publication happens under the SQLMesh lock (see sqlmesh_lock.py): two transforms never
publish or run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

# SQLMesh keeps intervals in milliseconds: one millisecond past the stamp keeps the stamp inside.
PAST_STAMP = timedelta(milliseconds=1)


@dataclass(frozen=True)
class Publication:
    execution_time: datetime  # what SQLMesh is told "now" is
    batches: int  # batches published by this call (0: nothing new, the clock did not move)


def publish_batches(conn: psycopg.Connection) -> Publication:
    """Publish every committed batch not yet published; return SQLMesh's execution time.

    With nothing new the execution time stays where it was, so SQLMesh finds nothing to do.
    """
    with conn.transaction():
        conn.execute("lock table ops.transform_clock in exclusive mode")
        last = conn.execute("select execution_time from ops.transform_clock").fetchone()
        waiting = conn.execute(
            "select count(*), max(batch_id) from ops.batches "
            "where published_at is null and status = 'committed'"
        ).fetchone()
        if last is not None and waiting[0] == 0:
            return Publication(last[0], 0)
        stamp = conn.execute(
            "select greatest(clock_timestamp(), %s, %s)",
            (last[0] if last else None, processed_until(conn)),
        ).fetchone()[0]
        published = conn.execute(
            "update ops.batches set published_at = %s "
            "where published_at is null and status = 'committed'",
            (stamp,),
        ).rowcount
        execution_time = stamp + PAST_STAMP
        conn.execute(
            """
            insert into ops.transform_clock (execution_time, published_to) values (%s, %s)
            on conflict (singleton) do update
            set execution_time = excluded.execution_time,
                published_to = coalesce(excluded.published_to, ops.transform_clock.published_to),
                updated_at = clock_timestamp()
            """,
            (execution_time, waiting[1]),
        )
    return Publication(execution_time, published)


def processed_until(conn: psycopg.Connection) -> datetime | None:
    """The end of the latest interval SQLMesh recorded in any environment (None before any)."""
    exists = conn.execute("select to_regclass('sqlmesh._intervals') is not null").fetchone()[0]
    if not exists:
        return None
    return conn.execute(
        "select to_timestamp(max(end_ts) / 1000.0) from sqlmesh._intervals"
    ).fetchone()[0]
