"""Failures a person can act on: which connection, what went wrong, what to do next, and whether
trying again could help.

A wrong password, a missing database or table, a source that is not configured: the same call
fails the same way, so neither Prefect (retries.py) nor the CLI tries it again, and the CLI
prints one message built from these parts; the traceback goes to the log (logs.py).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flows.pgurl import PgParams

if TYPE_CHECKING:
    import psycopg


class BankdwError(RuntimeError):
    """An error with what to do next (`hint`). `retryable` False: retrying cannot help."""

    def __init__(self, message: str, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.hint = hint
        self.retryable = retryable

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Pickled with its hint and verdict (a Prefect state may carry it across processes);
        # the default would call the subclass's own __init__ with the message alone.
        return _rebuild, (type(self), str(self), self.hint, self.retryable)


def _rebuild(
    cls: type[BankdwError], message: str, hint: str | None, retryable: bool
) -> BankdwError:
    error = cls.__new__(cls)
    BankdwError.__init__(error, message, hint, retryable)
    return error


class ConnectionFailure(BankdwError):
    """A database could not be reached: the message names it (never its password)."""


class SourceNotConfigured(BankdwError):
    """A server warehouse without SOURCE_URL: bankdw creates no demo source on a real server."""

    def __init__(self) -> None:
        super().__init__(
            "the warehouse is a server (WAREHOUSE_URL) and SOURCE_URL is not set; bankdw "
            "creates the demo core bank only beside its embedded warehouse, never on a server",
            "set SOURCE_URL to the core bank's database (in .env or the environment), or unset "
            "WAREHOUSE_URL to run the embedded demo",
        )


class SourceTableMissing(BankdwError):
    """The source has no table the extraction reads."""


def describe_connection(conn: psycopg.Connection) -> str:
    """Where an open connection points: host, port and database, never the password."""
    info = conn.info
    return PgParams(info.host, info.port, info.user, "", info.dbname).describe()


def missing_tables(source: psycopg.Connection, tables: list[str]) -> SourceTableMissing:
    """The source lacks tables: which source (never its password), which tables, what to do."""
    where = describe_connection(source)
    names = ", ".join(f"public.{table}" for table in tables)
    return SourceTableMissing(
        f"the source ({where}) has no table {names}",
        "point SOURCE_URL at the core bank's database (for the demo: `bankdw simulate --days 1` "
        "creates it)",
    )


# libpq's words for failures that the same attempt would meet again (English messages; a server
# answering in another language falls back to "cannot connect", retried like a server down).
_PERMANENT = (
    (
        re.compile(r"password authentication failed|role .* does not exist|no pg_hba\.conf entry"),
        "check the user and password in {setting}",
    ),
    (
        re.compile(r"database .* does not exist"),
        "create the database, or fix its name in {setting}",
    ),
    (
        re.compile(r"could not translate host name|failed to resolve host|Name or service not"),
        "fix the host name in {setting}",
    ),
)
_DOWN_HINT = "start the server, or fix the host and port in {setting}"


def cause_of(error: Exception) -> str:
    """libpq's reason, without its preamble: 'FATAL:  database "x" does not exist' ->
    'database "x" does not exist'; 'connection ... failed: Connection refused' -> the last part."""
    text = str(error).strip()
    if "FATAL:" in text:
        text = text.rsplit("FATAL:", 1)[1]
    elif "failed: " in text:
        text = text.rsplit("failed: ", 1)[1]
    return " ".join(text.split("\n", 1)[0].split())


def connection_failure(
    error: Exception, role: str, params: PgParams, setting: str
) -> ConnectionFailure:
    """`error` from connecting to `role` (the warehouse, the source) as a message a person can
    act on; `setting` is where its URL comes from (WAREHOUSE_URL, SOURCE_URL, --source-url)."""
    cause = cause_of(error)
    for pattern, hint in _PERMANENT:
        if pattern.search(cause):
            retryable, next_step = False, hint
            break
    else:
        retryable, next_step = True, _DOWN_HINT
    return ConnectionFailure(
        f"cannot connect to the {role} ({params.describe()}): {cause}",
        next_step.format(setting=setting),
        retryable=retryable,
    )


def explain(error: BaseException) -> tuple[str, str | None]:
    """The one message the CLI prints for `error`, and what to do next (if known)."""
    if isinstance(error, BankdwError):
        return str(error), error.hint
    # Other errors keep their type: `LookupError: ...` says more than the text alone.
    return f"{type(error).__name__}: {str(error).strip()}", None


def is_permanent(error: BaseException) -> bool:
    """Whether trying the same call again is bound to fail the same way."""
    return isinstance(error, BankdwError) and not error.retryable
