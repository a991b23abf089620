"""The one lock that serialises SQLMesh on a warehouse (SQLMesh has none on Postgres: sqlmesh
issue 3866).

It is a session-level advisory lock held on a connection of its own: it lives with the
warehouse, so two machines with two Prefect homes meet at it, and it dies with its holder, so a
process killed with `kill -9` (or a dropped connection) releases it at once. A Prefect
concurrency slot does neither: a killed run keeps its slot for ever.

While waiting, the lock says who holds it (the holder's application_name carries command, host
and pid); after `SQLMESH_LOCK_TIMEOUT_SECONDS` it gives up with a message saying what to do.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from flows.settings import Settings, get_settings

# pg_advisory_lock(int4, int4): shows in pg_locks as classid = LOCK_SPACE, objid = LOCK_ID,
# objsubid = 2, so the holder can be looked up.
LOCK_SPACE = 0x62616E6B  # "bank"
LOCK_ID = 1  # SQLMesh plans, runs and audits
APPLICATION_PREFIX = "bankdw sqlmesh lock"
HOLDER_VARIABLE = "BANKDW_SQLMESH_LOCK_HOLDER"
POLL_SECONDS = 1.0
REPORT_EVERY_SECONDS = 15.0


class LockTimeoutError(RuntimeError):
    """Another process held the SQLMesh lock for longer than the timeout."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    application_name: str
    client: str
    held_since: str

    def describe(self) -> str:
        who = self.application_name.removeprefix(APPLICATION_PREFIX).strip(" :") or "unknown"
        return f"{who} (server pid {self.pid}, from {self.client}, since {self.held_since})"


def current_holder(conn: psycopg.Connection) -> LockHolder | None:
    """Who holds the lock on this warehouse, if anyone."""
    row = conn.execute(
        """
        select a.pid, coalesce(a.application_name, ''),
               coalesce(host(a.client_addr), 'local socket'),
               to_char(a.backend_start at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"')
        from pg_locks as l
        join pg_stat_activity as a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.database = (
                select oid from pg_database where datname = current_database())
          and l.classid = %s and l.objid = %s and l.objsubid = 2
        """,
        (LOCK_SPACE, LOCK_ID),
    ).fetchone()
    return LockHolder(*row) if row else None


def holder_name(purpose: str) -> str:
    """What the lock's connection calls itself (pg_stat_activity.application_name, 63 bytes)."""
    return f"{APPLICATION_PREFIX}: {purpose} on {socket.gethostname()} pid {os.getpid()}"[:63]


def _connect(settings: Settings, purpose: str) -> psycopg.Connection:
    from flows.warehouse import warehouse_url

    conn = psycopg.connect(
        warehouse_url(settings),
        autocommit=True,
        application_name=holder_name(purpose),
        # A holder whose machine vanishes must not keep the lock for the OS default of 2 hours:
        # keepalives on both ends notice a dead peer in about a minute (ignored on Unix sockets).
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    conn.execute("set tcp_keepalives_idle = 30")
    conn.execute("set tcp_keepalives_interval = 10")
    conn.execute("set tcp_keepalives_count = 3")
    return conn


def _try_lock(conn: psycopg.Connection) -> bool:
    return conn.execute("select pg_try_advisory_lock(%s, %s)", (LOCK_SPACE, LOCK_ID)).fetchone()[0]


class SQLMeshLock:
    """The warehouse's SQLMesh lock, as one process holds it (a context manager).

    `ensure_held()` before each step: if the lock's connection dropped (the server restarted, the
    network failed), the lock went with it and is taken again, waiting as usual.
    """

    def __init__(
        self,
        purpose: str,
        settings: Settings | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.purpose = purpose
        self.settings = settings or get_settings()
        self.on_wait = on_wait
        self._conn: psycopg.Connection | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def acquire(self) -> None:
        conn = _connect(self.settings, self.purpose)
        try:
            _wait_for_lock(conn, self.settings.sqlmesh_lock_timeout_seconds, self.on_wait)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        # SQLMesh's before_all (macros/lock.py) checks that this process holds the lock.
        os.environ[HOLDER_VARIABLE] = holder_name(self.purpose)

    def ensure_held(self) -> None:
        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("select 1")
                return
            except psycopg.OperationalError:
                self._conn.close()
        self.acquire()

    def release(self) -> None:
        os.environ.pop(HOLDER_VARIABLE, None)
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            conn.execute("select pg_advisory_unlock(%s, %s)", (LOCK_SPACE, LOCK_ID))
        except psycopg.OperationalError:
            pass  # the connection is gone, and the lock with it
        finally:
            conn.close()

    def __enter__(self) -> SQLMeshLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@contextmanager
def sqlmesh_lock(
    purpose: str, settings: Settings | None = None, on_wait: Callable[[str], None] | None = None
) -> Iterator[SQLMeshLock]:
    """Hold the warehouse's SQLMesh lock for the duration of the block."""
    with SQLMeshLock(purpose, settings, on_wait) as lock:
        yield lock


def _wait_for_lock(
    conn: psycopg.Connection, timeout: float, on_wait: Callable[[str], None] | None
) -> None:
    started = time.monotonic()
    reported_at: float | None = None
    while not _try_lock(conn):
        holder = current_holder(conn)
        who = holder.describe() if holder else "a process that just released it"
        waited = time.monotonic() - started
        if waited >= timeout:
            raise LockTimeoutError(
                f"gave up after {waited:.0f} s waiting for the warehouse's SQLMesh lock, held by "
                f"{who}. If that run is still working, let it finish; if it is stuck, stop it "
                "(its lock is released when its process or connection ends), or wait longer with "
                "SQLMESH_LOCK_TIMEOUT_SECONDS"
            )
        due = reported_at is None or time.monotonic() - reported_at >= REPORT_EVERY_SECONDS
        if on_wait and due:
            on_wait(f"waiting for the SQLMesh lock held by {who} ({waited:.0f} s so far)")
            reported_at = time.monotonic()
        time.sleep(POLL_SECONDS)
