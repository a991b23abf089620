"""Where a bankdw command's log records go, and how much the screen shows.

Every record that reaches the root logger (bankdw's, Prefect's, SQLMesh's, GX's) goes to
`logs/bankdw.log` under the warehouse's local state, tracebacks included. The screen gets
warnings, one line each, without tracebacks: a failure is the CLI's to report, once, in a
message a person can act on (failures.py), not Prefect's to print as pages of tracebacks while
it retries. `--verbose` puts everything on the screen as well, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
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


def _below_error(record: logging.LogRecord) -> bool:
    return record.levelno < logging.ERROR


def setup(log_dir: Path, verbose: bool) -> Path:
    """Send the root logger's records to the log file and (briefly, unless verbose) the screen.

    Call it before Prefect is imported: Prefect then leaves the root logger alone (it only adds
    its console handler where no one configured one). Returns the log file's path.
    """
    global _log_path
    set_verbose(verbose)
    root = logging.getLogger()
    for handler in _installed:
        root.removeHandler(handler)
        handler.close()
    _installed.clear()

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
    for handler in (file, screen):
        root.addHandler(handler)
        _installed.append(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # A line per HTTP request to Prefect's API drowns what --verbose is for.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return _log_path
