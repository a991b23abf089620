"""Where a bankdw command's log records go, and how much the screen shows.

Every record that reaches the root logger (bankdw's, Prefect's, SQLMesh's, GX's) goes to
`logs/bankdw.log` under the warehouse's local state, tracebacks included. The screen gets
warnings, one line each, without tracebacks: a failure is the CLI's to report, once, in a
message a person can act on (failures.py), not Prefect's to print as pages of tracebacks while
it retries. `--verbose` puts everything on the screen as well, tracebacks included.

With LOG_FORMAT=json (for a log shipper), every record bankdw writes, to the file and the
screen, is one JSON object per line, carrying the Prefect flow run id it was logged under as
`flow_run_id`: the correlation id that ties a record to its ops.pipeline_runs row, its alerts
and its batches.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from logging.handlers import RotatingFileHandler
from pathlib import Path

LOG_FILE = "bankdw.log"
# The log keeps a few megabytes: enough for the last runs' tracebacks, never a growing disk.
LOG_BYTES = 5_000_000
LOG_BACKUPS = 2

_verbose = False
_installed: list[logging.Handler] = []
_log_path: Path | None = None


def verbose() -> bool:
    """Whether the command runs with --verbose (more detail on the screen)."""
    return _verbose


def set_verbose(on: bool) -> None:
    global _verbose
    _verbose = on


def log_path() -> Path | None:
    """The log file of this command, once set up."""
    return _log_path


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (not the one at creation)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # type: ignore[no-untyped-def]
        pass


class OneLine(logging.Formatter):
    """`warning: message`, never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


# The flow run in progress in this process (flows/runs.py sets it), for records logged where
# Prefect's run context does not reach: SQLMesh's and GX's own threads.
_correlation_id: str | None = None


def set_correlation_id(flow_run_id: str | None) -> None:
    global _correlation_id
    _correlation_id = flow_run_id


def current_flow_run_id() -> str | None:
    """The flow run a record belongs to: Prefect's run context (the flow's thread and its task
    threads), else the run this process is executing, else None (outside any run)."""
    context = sys.modules.get("prefect.context")  # never import Prefect just to log
    if context is not None:
        flow = context.FlowRunContext.get()
        if flow is not None and flow.flow_run is not None:
            return str(flow.flow_run.id)
        task = context.TaskRunContext.get()
        if task is not None and task.task_run.flow_run_id is not None:
            return str(task.task_run.flow_run_id)
    return _correlation_id


class CorrelationFilter(logging.Filter):
    """Stamps every record with `flow_run_id` (Prefect's run loggers already set it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "flow_run_id", None):
            record.flow_run_id = current_flow_run_id()
        else:
            record.flow_run_id = str(record.flow_run_id)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, flow_run_id, and the
    task run and exception when there are."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "flow_run_id": getattr(record, "flow_run_id", None),
        }
        task_run_id = getattr(record, "task_run_id", None)
        if task_run_id:
            entry["task_run_id"] = str(task_run_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


def teardown() -> None:
    """Remove the handlers setup() installed (a test that set up logging in its own process)."""
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()


def setup(log_dir: Path, verbose: bool, log_format: str = "text") -> Path:
    """Send the root logger's records to the log file and (briefly, unless verbose) the screen;
    as JSON lines with the flow run id when `log_format` is "json" (LOG_FORMAT).

    Call it before Prefect is imported: Prefect then leaves the root logger alone (it only adds
    its console handler where no one configured one). Returns the log file's path.
    """
    global _log_path
    set_verbose(verbose)
    root = logging.getLogger()
    teardown()

    log_dir.mkdir(parents=True, exist_ok=True)
    _log_path = log_dir / LOG_FILE
    file = RotatingFileHandler(
        _log_path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS, encoding="utf-8", delay=True
    )
    file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    screen = StderrHandler()
    if verbose:
        screen.setFormatter(
            logging.Formatter("%(asctime)s | %(levelname)-7s | %(name)s - %(message)s", "%H:%M:%S")
        )
    else:
        screen.setFormatter(OneLine())
        screen.addFilter(_below_error)
    if log_format == "json":
        for handler in (file, screen):
            handler.setFormatter(JsonFormatter())
        # A log shipper wants the runs' records, not only their warnings: the file takes INFO;
        # the screen stays as quiet as ever unless --verbose.
        if not verbose:
            screen.setLevel(logging.WARNING)
    for handler in (file, screen):
        handler.addFilter(CorrelationFilter())
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(logging.INFO if verbose or log_format == "json" else logging.WARNING)
    # A line per HTTP request to Prefect's API drowns what --verbose is for.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return _log_path
