"""The life of one `bankdw` process: how it stops, and what it leaves behind.

A command may start two servers: the embedded PostgreSQL (flows/warehouse.py) and, without
PREFECT_API_URL, Prefect's temporary API (flows/prefect_api.py). However the command ends, it
must not leave them running, nor hang:

- SIGTERM and SIGHUP are handled like Ctrl-C: KeyboardInterrupt in the main thread, so finally
  blocks, context managers and atexit run (flow runs marked crashed, connections closed and with
  them their Postgres locks, servers stopped). A second signal exits at once.
- From the first signal, the queries running on the connections bankdw opened (track()) are
  cancelled: a task thread blocked in a long COPY or on a lock fails now, instead of holding
  the flow (which waits for its task threads) until the deadline.
- From the first signal, or from the command's end, the process has a deadline. Prefect's
  clients retry an API that went away for minutes, and its event and log workers flush at exit
  without a timeout; past the deadline the exit handlers run and the process exits anyway.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import psycopg

# From a stop signal to the hard exit: time for flows to be marked crashed and servers stopped.
GRACE_SECONDS = 10.0
# From the command's end to the hard exit: time for Prefect to flush its events and logs.
FLUSH_SECONDS = 15.0

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_lock = threading.RLock()  # re-entrant: the signal handler may run while the main thread holds it
_deadline: float | None = None
_raised = False  # our handler raised KeyboardInterrupt once: the next signal exits at once
_signalled: int | None = None  # the stop signal received, for the exit code
_reason: str | None = None  # why the process stops itself (fail())
_exiting = threading.Event()  # set when atexit handlers start running
_connections: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()


def run(command: Callable[[], object]) -> NoReturn:
    """Run a click/typer command (standalone: it raises SystemExit) as this process's life."""
    _handle_stop_signals()
    try:
        command()
        code: int = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    except KeyboardInterrupt:
        code = 1
    if _reason is not None:
        code = 1
    elif _signalled is not None:
        code = 128 + _signalled
        print(f"bankdw: stopped by {signal.Signals(_signalled).name}", file=sys.stderr)
    # Registered last, so it runs first: the hard exit must not run the exit handlers twice.
    atexit.register(_exiting.set)
    _arm_deadline(FLUSH_SECONDS, code, "flushing Prefect's events and logs")
    sys.exit(code)


def stopping() -> bool:
    """Whether the process was asked to stop (a retry now would only delay the exit)."""
    return _signalled is not None or _reason is not None


def track(conn: psycopg.Connection) -> psycopg.Connection:
    """Have `conn`'s running query cancelled if the process is asked to stop; returns it."""
    _connections.add(conn)
    return conn


def fail(reason: str) -> None:
    """Stop the command from another thread: KeyboardInterrupt in the main thread, exit code 1."""
    global _reason
    if _reason is not None or _exiting.is_set():
        return
    _reason = reason
    print(f"error: {reason}", file=sys.stderr)
    # Short: what fails here usually cannot be reported anyway (e.g. the API is gone).
    _arm_deadline(3, 1, "stopping")
    import _thread

    _thread.interrupt_main()


def _handle_stop_signals() -> None:
    for signum in STOP_SIGNALS:
        # A disposition other than the default is someone's choice: `nohup` ignores SIGHUP, a
        # shell ignores SIGINT for a background job.
        if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(signum, _on_stop_signal)
    # While a flow runs, Prefect swaps in its own SIGTERM handler (capture_sigterm in
    # prefect/utilities/engine) and only hands the signal back once the flow has unwound, which
    # waits for the flow's running task threads. The wakeup fd sees every signal whoever handles
    # it: the deadline starts at the signal, not after that wait.
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    watcher = threading.Thread(target=_watch_signals, args=(read,), name="bankdw-signals")
    watcher.daemon = True
    watcher.start()


def _watch_signals(fd: int) -> None:
    while data := os.read(fd, 64):
        for signum in data:
            if signum in STOP_SIGNALS:
                _signal_received(signum)


def _signal_received(signum: int) -> None:
    global _signalled
    if _signalled is None:
        _signalled = signum
        # Not in the signal handler's thread: a cancel request is a round trip to the server.
        threading.Thread(target=_cancel_queries, name="bankdw-cancel", daemon=True).start()
    _arm_deadline(GRACE_SECONDS, 128 + signum, f"stopping after {signal.Signals(signum).name}")


def _cancel_queries() -> None:
    from psycopg.pq import TransactionStatus

    # Until the process ends: a thread may start a query after a sweep (the next step of its
    # task, or recording its failed batch), and wait for a lock that a cancelled one held.
    while True:
        for conn in list(_connections):
            if conn.info.transaction_status == TransactionStatus.ACTIVE:
                with contextlib.suppress(Exception):  # closed meanwhile, server gone: done
                    conn.cancel_safe(timeout=2)
        time.sleep(0.5)


def _on_stop_signal(signum: int, frame: object) -> None:
    global _raised
    _signal_received(signum)
    if _raised:
        os._exit(128 + signum)  # asked twice: the API server dies with us (prefect_api.py)
    _raised = True
    raise KeyboardInterrupt


def _arm_deadline(seconds: float, code: int, doing: str) -> None:
    """Exit with `code` in `seconds` at the latest (an earlier deadline stands)."""
    global _deadline
    with _lock:
        at = time.monotonic() + seconds
        if _deadline is not None and _deadline <= at:
            return
        _deadline = at
    timer = threading.Timer(seconds, _hard_exit, args=(code, f"{doing} took over {seconds:g} s"))
    timer.daemon = True
    timer.name = "bankdw-deadline"
    timer.start()


def _hard_exit(code: int, why: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr gone with its terminal or pipe
        print(f"bankdw: {why}; exiting now", file=sys.stderr, flush=True)
    if not _exiting.is_set():
        # Stop the servers the normal way (Prefect's and pgserver's atexit handlers), bounded.
        cleanup = threading.Thread(target=atexit._run_exitfuncs, daemon=True)
        cleanup.start()
        cleanup.join(5)
    os._exit(code)


def forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that no longer exist from pgserver's list of the server's users.

    pgserver stops the server when the last process that uses it exits, and lists them in
    `.handle_pids.json`. A process killed before its atexit handler stays listed for ever, after
    which no command would stop the server it starts.
    """
    import psutil
    from pgserver.postgres_server import PostgresServer

    path = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # pgserver's own inter-process lock on that file
        if not path.exists():
            return
        try:
            pids = json.loads(path.read_text() or "[]")
        except ValueError:
            # A process killed while pgserver rewrote the file left it cut short: pgserver would
            # fail to read it on every start. Its users are unknown: start the list afresh.
            pids = None
        alive = [pid for pid in pids or [] if psutil.pid_exists(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
