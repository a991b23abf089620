"""The warehouse's SQLMesh lock: one holder at a time, across processes and Prefect homes; a
waiter says who holds it and gives up after the timeout; a holder killed with `kill -9` frees
it at once; and SQLMesh started without it refuses to touch a table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from flows import transform
from flows.pipeline import run_flow
from flows.publication import publish_batches
from flows.settings import get_settings, reset_settings
from flows.simulate import simulate
from flows.sqlmesh_lock import LockTimeoutError, SQLMeshLock, current_holder

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bank(bank_factory):
    bank = bank_factory("lock")
    simulate(bank.source_url, 2, scale=20, seed=8, bad_rate=0.0)
    run_flow()
    return bank


def wait_until(condition, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def test_waiter_names_the_holder_and_gives_up_after_the_timeout(bank, monkeypatch):
    monkeypatch.setenv("SQLMESH_LOCK_TIMEOUT_SECONDS", "2")
    reset_settings()
    heard: list[str] = []
    try:
        with SQLMeshLock("nightly rebuild"):
            started = time.monotonic()
            with (
                pytest.raises(LockTimeoutError) as refused,
                SQLMeshLock("a second run", on_wait=heard.append),
            ):
                pass
            waited = time.monotonic() - started
    finally:
        monkeypatch.undo()
        reset_settings()
    assert 2 <= waited < 10
    message = str(refused.value)
    assert "nightly rebuild" in message and f"pid {os.getpid()}" in message
    assert "SQLMESH_LOCK_TIMEOUT_SECONDS" in message
    assert heard and "nightly rebuild" in heard[0]


def test_lock_of_a_killed_holder_is_free_at_once(bank):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from flows.sqlmesh_lock import SQLMeshLock\n"
            "with SQLMeshLock('doomed run'):\n    print('held', flush=True); time.sleep(600)",
        ],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with psycopg.connect(bank.warehouse_url) as conn:
            assert "doomed run" in current_holder(conn).application_name
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        with SQLMeshLock("next run"):
            assert time.monotonic() - started < 5
    finally:
        holder.kill()


def test_sqlmesh_without_the_lock_refuses_to_run(bank):
    simulate(bank.source_url, 1, scale=20, seed=8, bad_rate=0.0)
    from flows.pipeline import extract_flow

    extract_flow()
    with psycopg.connect(bank.warehouse_url, autocommit=True) as conn:
        execution_time = publish_batches(conn).execution_time
        hub_before = conn.execute("select count(*) from vault.hub_transaction").fetchone()[0]
    log = transform.FailureLog()
    context = transform.open_context(get_settings(), log)
    try:
        status = context.run(
            "prod", execution_time=execution_time, end=execution_time, ignore_cron=True
        )
    except Exception as err:  # the guard may surface as an exception or as a failed status
        log.errors.append(str(err))
        status = None
    finally:
        context.close()
    assert status is None or status.is_failure
    assert any("without the warehouse's SQLMesh lock" in e for e in log.errors), log.errors
    with psycopg.connect(bank.warehouse_url) as conn:
        assert (
            conn.execute("select count(*) from vault.hub_transaction").fetchone()[0] == hub_before
        )
    # Through bankdw (lock taken, batches published) the same work goes through.
    with transform.Transformation("test") as transformation:
        transformation.run("prod")
    with psycopg.connect(bank.warehouse_url) as conn:
        assert conn.execute("select count(*) from vault.hub_transaction").fetchone()[0] > hub_before


def test_two_runs_from_two_prefect_homes_are_serialised(bank, tmp_path):
    """Two `bankdw transform` processes with separate Prefect homes (two machines, as far as
    Prefect knows) meet at the warehouse's lock: both wait while the test holds it, say who holds
    it, then run one after the other and both succeed (no spurious audit failure)."""
    simulate(bank.source_url, 1, scale=20, seed=8, bad_rate=0.0)
    from flows.pipeline import extract_flow

    extract_flow()
    runs = []
    with SQLMeshLock("maintenance by hand"):
        for name in ("first", "second"):
            # Each process its own Prefect home and temporary API, none of the test harness's.
            home = tmp_path / name / "prefect"
            home.mkdir(parents=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
            env.update(PREFECT_HOME=str(home), WAREHOUSE_DIR=str(tmp_path / name))
            runs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "flows.cli", "transform"],
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        # Autocommit: pg_stat_activity is a snapshot per transaction.
        with psycopg.connect(bank.warehouse_url, autocommit=True) as conn:

            def both_waiting() -> bool:
                return (
                    conn.execute(
                        "select count(*) from pg_stat_activity "
                        "where application_name like 'bankdw sqlmesh lock: bankdw transform%'"
                    ).fetchone()[0]
                    == 2
                )

            try:
                wait_until(both_waiting, 120)
            except AssertionError:
                for run in runs:
                    run.kill()
                raise AssertionError([run.communicate()[0][-3000:] for run in runs]) from None
        time.sleep(2)  # let each report whom it waits for
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    for output in outputs:
        assert "waiting for the SQLMesh lock held by maintenance by hand" in output, output
