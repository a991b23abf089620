"""Prefect's temporary API, started early and so that it never outlives the bankdw process.

Without PREFECT_API_URL, Prefect starts a local API server on first use (SubprocessASGIServer in
prefect/server/api/server.py): a plain child process, stopped by an atexit handler. A `kill -9`
or an unhandled SIGTERM of bankdw skips that handler and orphans it; a terminal's Ctrl-C or
`timeout`, which signal the whole process group, kill it while bankdw still needs it to report
its crashed runs, and Prefect's clients then retry the dead API for minutes. And it costs
seconds: the server imports Prefect's whole web application, and Prefect waits for it before
the first flow runs. So bankdw starts the same server itself, first thing, and points
PREFECT_API_URL at it before Prefect is imported; the command's own imports and connections
proceed while the server boots, and the first flow waits only for what remains. The server runs:

- in a session of its own: signals meant for bankdw reach bankdw only, which stops it last;
- with PR_SET_PDEATHSIG (Linux): the kernel sends it SIGTERM when bankdw dies, even by kill -9;
- with a pid file under PREFECT_HOME/servers, from which the next command stops a server whose
  bankdw is gone (where PDEATHSIG does not exist, or the server ignored it);
- watched: if it exits under a running command, the command fails at once (runtime.fail)
  instead of retrying a dead API.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil

from flows import runtime

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def start_temporary_api(prefect_home: Path, scheduler: bool = False) -> TemporaryApi | None:
    """Start Prefect's temporary API for this process, unless PREFECT_API_URL names a server.

    Call it from the main thread (PDEATHSIG fires when the thread that started the child ends)
    and before Prefect is imported: it sets PREFECT_API_URL. Returns the server (`wait_until_ready`
    before the first flow), or None when a server is configured.

    `scheduler`: run the server's background services too (the scheduler that turns deployment
    schedules into flow runs, late runs, ...), as `prefect server start` does. Prefect's
    ephemeral mode, enough for a command that runs one flow, runs none of them: `bankdw serve`
    would then never see a scheduled run.
    """
    if configured_api_url():
        return None
    pid_dir = prefect_home / "servers"
    stop_orphans(pid_dir)
    server = TemporaryApi(pid_dir, scheduler=scheduler)
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    return server


def configured_api_url() -> str | None:
    """The Prefect API the user configured: PREFECT_API_URL in the environment or the active
    profile (read as a file, so that deciding costs no import of Prefect); in a process where
    Prefect is loaded (tests under prefect_test_harness), Prefect's own setting."""
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return PREFECT_API_URL.value()
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")).expanduser()
    try:
        profiles = tomllib.loads((home / "profiles.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    return profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")


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


class TemporaryApi:
    """Prefect's own API server process (the command SubprocessASGIServer runs), tied to us."""

    def __init__(self, pid_dir: Path, scheduler: bool = False) -> None:
        self.pid_dir = pid_dir
        self.scheduler = scheduler
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._stopping = False

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        # Where Prefect lives, without importing it (that costs a second, the server needs none).
        spec = importlib.util.find_spec("prefect")
        assert spec is not None and spec.origin is not None, "prefect is not installed"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(Path(spec.origin).parent.parent),
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
                **({} if self.scheduler else {"PREFECT__SERVER_EPHEMERAL": "1"}),
                "PREFECT__SERVER_FINAL": "1",
            },
            start_new_session=True,
            preexec_fn=_dying_with(os.getpid()),
        )
        self._write_pid_file(self.process.pid)
        atexit.register(self.stop)
        threading.Thread(
            target=self._watch, args=(self.process,), name="bankdw-prefect-api", daemon=True
        ).start()

    def wait_until_ready(self, timeout: float) -> None:
        """Block until the API answers its health check (at most `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while not self._ready:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise RuntimeError(f"Prefect's temporary API server exited with code {code}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response,
            ):
                self._ready = response.status == 200
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Prefect's temporary API did not start within {timeout:.0f} s "
                    "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS)"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        self._stopping = True
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._pid_file().unlink(missing_ok=True)

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        if not self._stopping:
            runtime.fail(
                f"Prefect's temporary API server (pid {process.pid}) exited with code {code}"
            )

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


def _free_port() -> int:
    """A port free now on 127.0.0.1 (the server binds it a moment later)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
