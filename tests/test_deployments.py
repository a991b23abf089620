"""prefect.yaml's deployments on a real Prefect server: `prefect deploy --all` registers them with
their schedules, parameters and concurrency limits, a process worker runs one against the test's
warehouse, and `bankdw serve` serves the same deployments and stops cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from flows.deployments import load_flow, read_declarations, served_deployments

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "bankdw"
EXPECTED = {"incremental", "daily", "weekly-maintenance", "promote"}


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a process started in a session of its own, and everything it started."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    with contextlib.suppress(ProcessLookupError):  # children left behind by a clean exit
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Prefect server on 127.0.0.1 with a home of its own; returns the environment of a
    process that talks to it (and imports this checkout's `flows`)."""
    home = tmp_path_factory.mktemp("prefect_home")
    url = f"http://127.0.0.1:{_free_port()}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # The worker's run logs at INFO reach the server: the test reads them there.
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PYTHONPATH": str(REPO),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = (home / "server.log").open("wb")
    port = url.rsplit(":", 1)[1].split("/")[0]
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if _healthy(url):
                break
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Prefect server did not answer in 90 s"
            time.sleep(0.3)
        yield env
    finally:
        _stop(server)
        log.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _prefect(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def _on_server(env: dict[str, str], call) -> Any:  # type: ignore[no-untyped-def]
    """Run `call(client)` against the test's server (not the suite's Prefect test harness)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    async def run() -> Any:
        async with get_client() as client:
            return await call(client)

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        return asyncio.run(run())


def _schedule_of(schedule: Any) -> tuple[str, Any, str | None]:
    """What a schedule means, whoever built it (anchor dates aside: they are the deploy time)."""
    if getattr(schedule, "cron", None):
        return ("cron", schedule.cron, schedule.timezone)
    return ("interval", schedule.interval, schedule.timezone)


def _declared() -> dict[str, dict[str, Any]]:
    """prefect.yaml read plainly (not by flows.deployments): what every reading must match."""
    document = yaml.safe_load((REPO / "prefect.yaml").read_text())
    declared = {}
    for entry in document["deployments"]:
        schedules = set()
        for s in entry["schedules"]:
            if "cron" in s:
                schedules.add(("cron", s["cron"], s.get("timezone")))
            else:
                schedules.add(("interval", timedelta(seconds=s["interval"]), s.get("timezone")))
        declared[entry["name"]] = {
            "flow": load_flow(entry["entrypoint"]).name,
            "parameters": entry["parameters"],
            "schedules": schedules,
            "limit": entry["concurrency_limit"]["limit"],
            "strategy": entry["concurrency_limit"]["collision_strategy"],
        }
    return declared


async def _registered(client) -> dict[str, dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The server's deployments, in the shape of _declared(), plus what only a server has."""
    found = {}
    for d in await client.read_deployments():
        flow = await client.read_flow(d.flow_id)
        found[d.name] = {
            "flow": flow.name,
            "parameters": d.parameters,
            "schedules": {_schedule_of(s.schedule) for s in d.schedules},
            "limit": d.global_concurrency_limit.limit if d.global_concurrency_limit else None,
            "strategy": d.concurrency_options.collision_strategy.value
            if d.concurrency_options
            else None,
            "_id": d.id,
            "_pool": d.work_pool_name,
            "_pull": d.pull_steps,
            "_paused": d.paused,
            "_active": [s.active for s in d.schedules],
        }
    return found


def _public(deployments: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        n: {k: v for k, v in d.items() if not k.startswith("_")} for n, d in deployments.items()
    }


def test_prefect_yaml_declares_what_production_needs():
    """The issue's deployments, each limited to one run at a time (they all run SQLMesh)."""
    declared = _declared()
    assert set(declared) == EXPECTED
    assert declared["incremental"]["schedules"] == {("interval", timedelta(minutes=5), "UTC")}
    assert declared["incremental"]["strategy"] == "CANCEL_NEW"
    assert declared["daily"]["parameters"] == {"deletes": "full"}
    assert declared["daily"]["flow"] == declared["incremental"]["flow"] == "bankdw-run"
    assert declared["promote"]["schedules"] == set()
    assert declared["weekly-maintenance"]["flow"] == "bankdw-maintenance"
    assert all(d["limit"] == 1 for d in declared.values())


def test_bankdw_serve_builds_the_deployments_prefect_yaml_declares():
    """No server needed: `bankdw serve`'s deployments are prefect.yaml's, nothing added or lost."""
    served = {}
    for d in served_deployments(REPO / "prefect.yaml"):
        served[d.name] = {
            "flow": d.flow_name,
            "parameters": d.parameters,
            "schedules": {_schedule_of(s.schedule) for s in d.schedules},
            "limit": d.concurrency_limit,
            "strategy": d.concurrency_options.collision_strategy.value
            if d.concurrency_options
            else None,
        }
    assert served == _declared()


def test_serve_refuses_what_it_would_read_differently(tmp_path):
    bad = tmp_path / "prefect.yaml"
    bad.write_text(
        "deployments:\n  - name: x\n    entrypoint: flows/pipeline.py:run_flow\n"
        "    schedules:\n      - rrule: FREQ=DAILY\n"
    )
    with pytest.raises(ValueError, match="rrule"):
        read_declarations(bad)


def test_deploy_all_registers_every_deployment_and_a_worker_runs_one(
    prefect_server, bank_factory, tmp_path
):
    bank = bank_factory("deploy")
    env = {**prefect_server, **{k: os.environ[k] for k in ("WAREHOUSE_URL", "SOURCE_URL")}}
    env["WAREHOUSE_DIR"] = os.environ["WAREHOUSE_DIR"]

    _prefect(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    _prefect(env, "deploy", "--all")

    registered = _on_server(env, _registered)
    assert _public(registered) == _declared()
    for d in registered.values():
        assert d["_pool"] == POOL
        assert d["_pull"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]

    # The maintenance run, on the test's warehouse: a raw table with dead rows gets vacuumed.
    with psycopg.connect(bank.warehouse_url, autocommit=True) as conn:
        conn.execute("create schema raw")
        conn.execute("create table raw.probe as select g as id from generate_series(1, 1000) g")
        conn.execute("delete from raw.probe where id % 2 = 0")

    maintenance = registered["weekly-maintenance"]["_id"]

    async def trigger(client):  # type: ignore[no-untyped-def]
        return await client.create_flow_run_from_deployment(maintenance)

    flow_run = _on_server(env, trigger)

    async def state(client):  # type: ignore[no-untyped-def]
        return (await client.read_flow_run(flow_run.id)).state

    async def logs(client):  # type: ignore[no-untyped-def]
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        run_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        return [log.message for log in await client.read_logs(run_filter)]

    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while (current := _on_server(env, state)) is None or not current.is_final():
            assert worker.poll() is None, worker_log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"flow run still {current.name} after 120 s"
            time.sleep(1)
        assert current.is_completed(), (
            f"{current.name}: {current.message}\n" + (worker_log.read_text()[-3000:])
        )
        # The run's logs reach the server in batches, the last as its process exits (slowly on a
        # loaded machine: 30 s once proved too short).
        deadline = time.monotonic() + 120
        messages = _on_server(env, logs)
        while not any("raw tables" in m for m in messages):
            assert time.monotonic() < deadline, messages
            time.sleep(1)
            messages = _on_server(env, logs)
    finally:
        _stop(worker)
    assert any("sqlmesh janitor: skipped" in m for m in messages), messages
    assert any("vacuumed and analysed 1 raw tables" in m for m in messages), messages
    with psycopg.connect(bank.warehouse_url) as conn:
        vacuumed, analysed = conn.execute(
            "select last_vacuum, last_analyze from pg_stat_user_tables "
            "where schemaname = 'raw' and relname = 'probe'"
        ).fetchone()
    assert vacuumed is not None and analysed is not None


# Prefect 3.8.8's scheduler service fails on SQLAlchemy 2.1 ("Can't evaluate bulk DML
# statement"): no schedule would produce a run. pyproject.toml keeps SQLAlchemy below 2.1; this
# test is the one that notices if that stops holding.
def test_bankdw_serve_schedules_the_same_deployments_and_stops_on_ctrl_c(bank_factory, tmp_path):
    """A laptop: no PREFECT_API_URL, so `bankdw serve` starts its own temporary API, which must
    run Prefect's scheduler (an ephemeral API does not): the scheduled deployments get runs."""
    bank_factory("serve")
    home = tmp_path / "prefect_home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # The scheduler looks for schedules every 60 s by default: the test need not wait that.
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        # As from a terminal: a suite run in the background inherits SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    async def scheduled(client):  # type: ignore[no-untyped-def]
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState

        runs = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type={"any_": ["SCHEDULED"]}))
        )
        return {run.deployment_id for run in runs}

    try:
        deadline = time.monotonic() + 90
        api: dict[str, str] = {}
        while True:
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
            if not api:  # the temporary API's address, from the pid file bankdw keeps
                records = list((home / "servers").glob("*.json"))
                if records and _healthy(url := json.loads(records[0].read_text())["url"]):
                    api["PREFECT_API_URL"] = url
                continue
            served = _on_server(api, _registered)
            if set(served) == EXPECTED:
                break
        assert _public(served) == _declared()
        assert not any(d["_paused"] for d in served.values())
        # The scheduler (every 2 s here) gives each scheduled deployment its upcoming runs.
        wanted = {d["_id"] for d in served.values() if d["schedules"]}
        deadline = time.monotonic() + 20
        while not wanted <= (scheduled_ids := _on_server(api, scheduled)):
            if time.monotonic() > deadline:
                break
            time.sleep(1)

        serve.send_signal(signal.SIGINT)
        code = serve.wait(30)
        output = (tmp_path / "serve.log").read_text()
        assert code == 128 + signal.SIGINT, output[-3000:]
    finally:
        _stop(serve)
        log.close()
    assert wanted <= scheduled_ids, "no scheduled runs; see the scheduler's errors in serve.log"
