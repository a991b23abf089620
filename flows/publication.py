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
# A batch that brought nothing (no row in, no delete) has nothing to show the transformation:
# left unpublished, it does not move the clock, and a run with nothing new has nothing to do.
UNPUBLISHED = "published_at is null and status = 'committed' and (rows_in > 0 or rows_deleted > 0)"


@dataclass(frozen=True)
class Publication:
    execution_time: datetime  # what SQLMesh is told "now" is
    batches: int  # batches published by this call (0: nothing new, the clock did not move)
    previous: datetime | None = None  # the execution time before: this call published after it


def publish_batches(conn: psycopg.Connection) -> Publication:
    """Publish every committed batch not yet published; return SQLMesh's execution time.

    With nothing new the execution time stays where it was, so SQLMesh finds nothing to do.
    """
    with conn.transaction():
        conn.execute("lock table ops.transform_clock in exclusive mode")
        last = conn.execute("select execution_time from ops.transform_clock").fetchone()
        waiting = conn.execute(
            f"select count(*), max(batch_id) from ops.batches where {UNPUBLISHED}"
        ).fetchone()
        previous = last[0] if last else None
        if previous is not None and waiting[0] == 0:
            return Publication(previous, 0, previous)
        stamp = conn.execute(
            "select greatest(clock_timestamp(), %s, %s)", (previous, processed_until(conn))
        ).fetchone()[0]
        # One instant for all: batches published together are seen together (an account and its
        # transactions, extracted side by side, are judged as of the same moment). Versions of
        # one key from two such batches are ordered by batch in the satellites.
        published = conn.execute(
            f"update ops.batches set published_at = %s where {UNPUBLISHED}",
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
    return Publication(execution_time, published, previous)


def processed_until(conn: psycopg.Connection) -> datetime | None:
    """The end of the latest interval SQLMesh recorded in any environment (None before any)."""
    exists = conn.execute("select to_regclass('sqlmesh._intervals') is not null").fetchone()[0]
    if not exists:
        return None
    return conn.execute(
        "select to_timestamp(max(end_ts) / 1000.0) from sqlmesh._intervals"
    ).fetchone()[0]


def tick(conn: psycopg.Connection) -> Publication:
    """Move the clock past everything SQLMesh has recorded, with no new batch: after a
    restatement (which stops at the last whole interval) the next run then redoes the interval
    the restatement left half-done."""
    with conn.transaction():
        conn.execute("lock table ops.transform_clock in exclusive mode")
        row = conn.execute("select execution_time from ops.transform_clock").fetchone()
        previous = row[0] if row else None
        stamp = conn.execute(
            "select greatest(clock_timestamp(), %s::timestamptz + %s, %s)",
            (previous, PAST_STAMP, processed_until(conn)),
        ).fetchone()[0]
        execution_time = stamp + PAST_STAMP
        conn.execute(
            """
            insert into ops.transform_clock (execution_time) values (%s)
            on conflict (singleton) do update
            set execution_time = excluded.execution_time, updated_at = clock_timestamp()
            """,
            (execution_time,),
        )
    return Publication(execution_time, 0, previous)
