"""How a `bankdw` process ends, with real processes: SIGTERM or Ctrl-C mid-run, `kill -9`, a
failing run, and Prefect's temporary API dying under a run. Each must end within seconds and
leave no server behind it (flows/runtime.py, flows/prefect_api.py).

The commands run without PREFECT_API_URL, so each starts Prefect's temporary API (~10 s here),
with its own WAREHOUSE_DIR (and so its own PREFECT_HOME) in a temporary folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg
import pytest
from pgserver.utils import PostmasterInfo

from flows.pgurl import parse_url
from flows.prefect_api import stop_orphans

PROJECT_ROOT = Path(__file__).resolve().parent.parent
API_START_SECONDS = 90  # the temporary API starts in ~10 s, far more on a loaded machine
STOP_SECONDS = 20  # a stopped command must be gone by then (runtime.GRACE_SECONDS is 10)


@dataclass
class Bankdw:
    """A `bankdw` command running as a subprocess, its output collected line by line."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    lines: list[tuple[float, str]] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "prefect" / "servers" / f"{self.proc.pid}.json"

    def wait_for_api(self) -> int:
        """Wait until the command's temporary API runs; returns the server's pid."""
        deadline = time.monotonic() + API_START_SECONDS
        while not self.pid_file.exists():
            assert self.proc.poll() is None, f"bankdw ended early:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, "the temporary API never started"
            time.sleep(0.1)
        return json.loads(self.pid_file.read_text())["server"]

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def wait(self, seconds: float) -> int:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pytest.fail(f"bankdw still runs after {seconds} s:\n{self.output[-3000:]}")


@pytest.fixture
def bankdw(tmp_path: Path) -> Iterator:
    """Start `bankdw ARGS` with its own WAREHOUSE_DIR; killed at the end if still running."""
    started: list[Bankdw] = []

    def start(*args: str, **env: str) -> Bankdw:
        # No Prefect server, and the embedded PostgreSQL unless the test names databases.
        unset = ("PREFECT_API_URL", "PREFECT_HOME", "WAREHOUSE_URL", "SOURCE_URL")
        environ = {k: v for k, v in os.environ.items() if k not in unset}
        environ.update(WAREHOUSE_DIR=str(tmp_path / "data"), TASK_RETRIES="0", **env)
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            cwd=PROJECT_ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals from the terminal running pytest stay away
            # As from a terminal: a suite run in the background (`cmd &`) inherits SIGINT ignored,
            # which bankdw rightly keeps (flows/runtime.py), and Ctrl-C would do nothing.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        run = Bankdw(proc, tmp_path / "data")

        def read() -> None:
            for raw in proc.stdout:  # type: ignore[union-attr]
                run.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

        threading.Thread(target=read, daemon=True).start()
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


def assert_gone(processes: list[psutil.Process], seconds: float = 10) -> None:
    _, alive = psutil.wait_procs(processes, timeout=seconds)
    assert not alive, f"still running: {[(p.pid, p.cmdline()) for p in alive]}"


def backends(url: str, app_name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            "select count(*) from pg_stat_activity where application_name = %s", (app_name,)
        ).fetchone()[0]


def wait_until_blocked(run: Bankdw, source: str, app_name: str) -> None:
    """Wait until a connection of the command waits on a lock: the one the test holds on a
    source table, or one held by the command's own transaction stuck behind it."""
    deadline = time.monotonic() + API_START_SECONDS
    with psycopg.connect(source, autocommit=True) as admin:
        while not admin.execute(
            "select count(*) from pg_stat_activity "
            "where application_name = %s and wait_event_type = 'Lock'",
            (app_name,),
        ).fetchone()[0]:
            assert run.proc.poll() is None, f"bankdw ended early:\n{run.output[-3000:]}"
            assert time.monotonic() < deadline, f"never blocked:\n{run.output[-3000:]}"
            time.sleep(0.1)


def read_postmaster(pgdata: Path) -> PostmasterInfo | None:
    """The embedded server's postmaster.pid, or None (also while the postmaster writes it)."""
    try:
        return PostmasterInfo.read_from_pgdata(pgdata)
    except AssertionError:  # pgserver asserts the file has all its lines
        return None


@pytest.fixture
def bank(new_database) -> tuple[str, str]:
    """A warehouse and a source with the core bank's tables, empty: extraction is quick."""
    source = new_database("src_life")
    with psycopg.connect(source) as conn:
        conn.execute((PROJECT_ROOT / "sql" / "source" / "corebank.sql").read_text())
    return new_database("wh_life"), source


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_stops_it_within_seconds_and_leaves_nothing(bankdw, bank, signum):
    warehouse, source = bank
    app_name = f"bankdw-life-{os.getpid()}-{signum}"
    with psycopg.connect(source) as holder:
        # The extraction of transactions waits on this lock: a run caught in the middle of a
        # long query, which the flow would wait for.
        holder.execute("lock table transactions in access exclusive mode")
        run = bankdw("extract", WAREHOUSE_URL=warehouse, SOURCE_URL=source, PGAPPNAME=app_name)
        server = psutil.Process(run.wait_for_api())
        wait_until_blocked(run, source, app_name)
        started = [server, *run.descendants()]

        run.proc.send_signal(signum)
        sent = time.monotonic()
        assert run.wait(STOP_SECONDS) == 128 + signum, run.output[-3000:]
        # Within seconds, without waiting for the lock: the blocked query was cancelled.
        assert time.monotonic() - sent < 8, run.output[-3000:]
        assert f"stopped by {signal.Signals(signum).name}" in run.output
        assert "exiting now" not in run.output, "it took the hard exit, not the graceful one"
        assert_gone(started)
        assert not run.pid_file.exists()
        # Its connections are closed, and with them its locks, while ours is still held.
        assert backends(source, app_name) == backends(warehouse, app_name) == 0


def test_kill_9_leaves_no_api_server_and_the_next_commands_reuse_or_restart_postgres(bankdw):
    """The embedded PostgreSQL: reused after a kill -9, restarted over a stale postmaster.pid."""
    assert bankdw("simulate", "--days", "1", "--scale", "20").wait(60) == 0

    run = bankdw("extract")
    pgdata = run.data_dir / "pgdata"
    server = psutil.Process(run.wait_for_api())
    deadline = time.monotonic() + 60
    while not ((info := read_postmaster(pgdata)) and info.is_running() and info.status == "ready"):
        assert time.monotonic() < deadline, f"no postmaster:\n{run.output[-3000:]}"
        time.sleep(0.1)
    # Not run.descendants(): a postmaster may still be one (pg_ctl not yet gone), and may stay.
    started = [server, *server.children(recursive=True)]
    run.proc.kill()
    assert run.wait(10) == -signal.SIGKILL
    # PR_SET_PDEATHSIG: the kernel stops the API server with its parent.
    assert_gone(started)
    assert run.pid_file.exists(), "nothing to show the next command it must check"

    # The postmaster a killed command leaves running is reused as it is.
    postmaster = read_postmaster(pgdata)
    assert postmaster is not None and postmaster.is_running()
    assert bankdw("sql", "select count(*) from customers", "--source").wait(60) == 0
    assert read_postmaster(pgdata).pid == postmaster.pid

    # A postmaster killed with -9 leaves a stale postmaster.pid; the next command starts anew,
    # drops the dead command's pid file, and stops what it started when it ends.
    os.kill(postmaster.pid, signal.SIGKILL)
    assert_gone([postmaster.process])
    following = bankdw("extract")
    assert following.wait(120) == 0, following.output[-3000:]
    assert "transactions" in following.output
    assert not run.pid_file.exists()
    assert not following.pid_file.exists()
    after = read_postmaster(pgdata)
    assert after is None or not after.is_running(), "the restarted postmaster was left running"


def test_a_failing_run_exits_at_once_with_a_one_line_error(bankdw, new_database):
    """A required column is missing from the source: a schema refusal inside the flow ends the
    command with one error line, no traceback on the screen (it is in the log), at once."""
    source = new_database("src_fail")
    with psycopg.connect(source) as conn:
        conn.execute((PROJECT_ROOT / "sql" / "source" / "corebank.sql").read_text())
        conn.execute("alter table customers drop column email")
    run = bankdw("extract", WAREHOUSE_URL=new_database("wh_fail"), SOURCE_URL=source)
    server = psutil.Process(run.wait_for_api())
    started = [server, *run.descendants()]
    assert run.wait(API_START_SECONDS) == 1, run.output[-3000:]
    ended = time.monotonic()
    errors = [(at, line) for at, line in run.lines if line.startswith("error:")]
    assert len(errors) == 1, run.output[-3000:]
    at, line = errors[0]
    assert "customers" in line and "'email' is missing from the source" in line, line
    assert f"the source ({parse_url(source).describe()})" in line, line
    assert "Traceback" not in run.output and "ERROR" not in run.output, run.output[-3000:]
    assert ended - at < 5, f"{ended - at:.1f} s from the error to the exit"
    assert "exiting now" not in run.output, "it took the hard exit, not the graceful one"
    assert_gone(started)
    assert not run.pid_file.exists()
    # The traceback went to the log; Prefect's database and the log are the owner's only.
    log = run.data_dir / "logs" / "bankdw.log"
    assert "Traceback" in log.read_text()
    private = [run.data_dir, log, run.data_dir / "prefect", run.data_dir / "prefect" / "prefect.db"]
    assert [oct(p.stat().st_mode & 0o777) for p in private] == ["0o700", "0o600", "0o700", "0o600"]


def test_a_run_whose_prefect_api_dies_fails_within_seconds(bankdw, bank):
    """What used to hang for minutes: Prefect's clients retrying an API that had gone."""
    warehouse, source = bank
    app_name = f"bankdw-life-{os.getpid()}-api"
    with psycopg.connect(source) as holder:
        holder.execute("lock table transactions in access exclusive mode")  # keep it mid-run
        run = bankdw("extract", WAREHOUSE_URL=warehouse, SOURCE_URL=source, PGAPPNAME=app_name)
        server = psutil.Process(run.wait_for_api())
        wait_until_blocked(run, source, app_name)
        started = [server, *run.descendants()]
        server.kill()
        killed = time.monotonic()
        assert run.wait(STOP_SECONDS + 10) == 1, run.output[-3000:]
    assert time.monotonic() - killed < STOP_SECONDS, run.output[-3000:]
    assert f"error: Prefect's temporary API server (pid {server.pid}) exited" in run.output
    assert_gone(started)


def test_stop_orphans_stops_only_servers_whose_command_is_gone(tmp_path):
    def record(path: Path, server: psutil.Process, parent: psutil.Process | tuple) -> None:
        parent_pid, parent_started = (
            parent if isinstance(parent, tuple) else (parent.pid, parent.create_time())
        )
        path.write_text(
            json.dumps(
                {
                    "server": server.pid,
                    "server_started": server.create_time(),
                    "parent": parent_pid,
                    "parent_started": parent_started,
                }
            )
        )

    dead = subprocess.Popen(["true"])
    dead.wait()
    gone_parent = (dead.pid, time.time())  # no such process any more
    orphan = psutil.Popen(["sleep", "60"])
    in_use = psutil.Popen(["sleep", "60"])
    try:
        record(tmp_path / "1.json", orphan, gone_parent)
        record(tmp_path / "2.json", in_use, psutil.Process())  # this process is alive
        # A record whose server pid now names another process (pid reuse): left alone.
        reused = {**json.loads((tmp_path / "2.json").read_text()), "server_started": 1.0}
        (tmp_path / "3.json").write_text(json.dumps({**reused, "parent": dead.pid}))

        assert stop_orphans(tmp_path) == [orphan.pid]
        assert_gone([orphan], seconds=5)
        assert in_use.is_running()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["2.json"]
    finally:
        for process in (orphan, in_use):
            if process.is_running():
                process.kill()
                process.wait()
