"""Prefect's temporary API, started so that it never outlives the bankdw process that uses it.

Without PREFECT_API_URL, Prefect starts a local API server on first use (SubprocessASGIServer in
prefect/server/api/server.py): a plain child process, stopped by an atexit handler. A `kill -9`
or an unhandled SIGTERM of bankdw skips that handler and orphans it; a terminal's Ctrl-C or
`timeout`, which signal the whole process group, kill it while bankdw still needs it to report
its crashed runs, and Prefect's clients then retry the dead API for minutes. So bankdw starts
it itself, before any flow, and registers it as Prefect's default server (as Prefect's own
prefect_test_harness does), so that Prefect's code uses it:

- in a session of its own: signals meant for bankdw reach bankdw only, which stops it last;
- with PR_SET_PDEATHSIG (Linux): the kernel sends it SIGTERM when bankdw dies, even by kill -9;
- with a pid file under PREFECT_HOME/servers, from which the next command stops a server whose
  bankdw is gone (where PDEATHSIG does not exist, or the server ignored it);
- watched: if it exits under a running command, the command fails at once (runtime.fail)
  instead of retrying a dead API.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prefect
import psutil
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, get_current_settings

from flows import runtime

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def start_temporary_api() -> str | None:
    """Start Prefect's temporary API for this process, unless PREFECT_API_URL names a server.

    Call it from the main thread: PDEATHSIG fires when the thread that started the child ends.
    Returns the API's URL, or None when a server is configured.
    """
    if PREFECT_API_URL.value():
        return None
    pid_dir = get_current_settings().home / "servers"
    stop_orphans(pid_dir)
    server = TiedServer()
    server.pid_dir = pid_dir
    SubprocessASGIServer._instances[None] = server
    server.start()
    return server.api_url


def stop_orphans(pid_dir: Path) -> list[int]:
    """Stop the temporary API servers recorded in `pid_dir` whose bankdw process is gone.

    Returns the pids stopped. A process is matched by pid and start time, so a pid that was
    reused since is never signalled.
    """
    stopped = []
    for path in sorted(pid_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _running(record["parent"], record["parent_started"]) is not None:
            continue  # another bankdw command is using it
        server = _running(record["server"], record["server_started"])
        if server is not None:
            victims = [server, *server.children(recursive=True)]
            for process in victims:
                process.terminate()
            _, alive = psutil.wait_procs(victims, timeout=5)
            for process in alive:
                process.kill()
            stopped.append(server.pid)
        path.unlink(missing_ok=True)
    return stopped


class TiedServer(SubprocessASGIServer):
    """Prefect's SubprocessASGIServer, started tied to this process (see the module's doc)."""

    _instances: dict[int | None, SubprocessASGIServer] = {}  # its own; Prefect's maps None to it
    pid_dir: Path
    _serving = False
    _stopping = False

    def start(self, timeout: int | None = None) -> None:
        if self._stopping:
            # Prefect would start a new server for a late client (a log flushed at exit, a crash
            # being reported), which the process would then have to wait for.
            raise RuntimeError("the temporary Prefect API was stopped: this command is ending")
        super().start(timeout)
        self._serving = True

    def stop(self) -> None:
        self._stopping = True
        super().stop()
        self._pid_file().unlink(missing_ok=True)

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        # Prefect's command and environment (SubprocessASGIServer._run_uvicorn_command in
        # prefect/server/api/server.py), in a session of its own and tied to this process.
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(prefect.__module_path__.parent),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env={
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                **get_current_settings().to_environment_variables(exclude_unset=True),
            },
            start_new_session=True,
            preexec_fn=_dying_with(os.getpid()),
        )
        self._write_pid_file(process.pid)
        threading.Thread(
            target=self._watch, args=(process,), name="bankdw-prefect-api", daemon=True
        ).start()
        return process

    def _watch(self, process: subprocess.Popen[Any]) -> None:
        code = process.wait()
        if self._stopping or (code == 3 and not self._serving):
            return  # stopped by us, or its port was taken at startup and Prefect tries another
        runtime.fail(f"Prefect's temporary API server (pid {process.pid}) exited with code {code}")

    def _pid_file(self) -> Path:
        return self.pid_dir / f"{os.getpid()}.json"

    def _write_pid_file(self, server_pid: int) -> None:
        record = {
            "server": server_pid,
            "server_started": psutil.Process(server_pid).create_time(),
            "parent": os.getpid(),
            "parent_started": psutil.Process().create_time(),
            "url": self.api_url,
        }
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        partial = self._pid_file().with_suffix(".tmp")
        partial.write_text(json.dumps(record))
        partial.replace(self._pid_file())  # whole or absent, for a concurrent stop_orphans


def _dying_with(parent: int) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGTERM when `parent` (its forking thread) ends."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None

    def preexec() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)

    return preexec


def _running(pid: int, started: float) -> psutil.Process | None:
    """The process `pid` if it runs and started at `started` (not a later owner of the pid)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - started) < 0.01 and process.is_running():
            return process
    except psutil.Error:
        pass
    return None
