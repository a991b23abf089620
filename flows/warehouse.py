"""Where the warehouse and the source live: WAREHOUSE_URL / SOURCE_URL, else embedded PostgreSQL.

The embedded server is `pgserver` (PostgreSQL 16 in a wheel), its data under `.warehouse/pgdata`.
It listens on a Unix socket only, so nothing on the network can reach it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import psycopg
from psycopg import sql

from flows.failures import BankdwError, SourceNotConfigured, connection_failure
from flows.pgurl import PgParams, parse_url
from flows.runtime import forget_dead_handles, track
from flows.settings import Settings, get_settings

logging.getLogger("pgserver").setLevel(logging.WARNING)
# pgserver asks platformdirs for a runtime folder when it is imported; without XDG_RUNTIME_DIR
# (ssh sessions, containers, cron) platformdirs warns on every command, and falls back to /tmp.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def _pgdata(settings: Settings) -> Path:
    return settings.data_dir / "pgdata"


def embedded_is_running(settings: Settings | None = None) -> bool:
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(_pgdata(settings or get_settings()))
    return info is not None and info.is_running()


_servers: dict[Path, object] = {}
# Extraction tasks run in threads: only one of them may start or attach to the server.
_servers_lock = threading.Lock()


def start_embedded(settings: Settings | None = None, keep_running: bool = False) -> PgParams:
    """Start (or attach to) the embedded server and return how to reach its `postgres` database.

    With keep_running=False the server stops when this process exits, unless it was already
    running (started by `bankdw db start`), in which case it is left as it was found.
    """
    import pgserver

    settings = settings or get_settings()
    pgdata = _pgdata(settings)
    with _servers_lock:
        if pgdata not in _servers:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            if pgdata.exists():
                forget_dead_handles(pgdata)  # so that "stop" stops it when this process ends
            cleanup = None if keep_running or embedded_is_running(settings) else "stop"
            _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode=cleanup)
        server = _servers[pgdata]
    socket_dir = str(server.get_postmaster_info().socket_dir)  # type: ignore[attr-defined]
    return PgParams(host=socket_dir, port=5432, user="postgres", password="", database="postgres")


def stop_embedded(settings: Settings | None = None) -> bool:
    """Stop the embedded server if it runs. Returns whether it was running."""
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    settings = settings or get_settings()
    pgdata = _pgdata(settings)
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    pg_ctl(["-w", "stop"], pgdata=pgdata, user="pgserver" if _running_as_root() else None)
    _servers.pop(pgdata, None)
    return True


def _running_as_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


_databases_seen: set[tuple[str, int, str]] = set()


def ensure_database(server: PgParams, database: str) -> None:
    """Create `database` on the server unless it exists (checked once per process)."""
    if (server.host, server.port, database) in _databases_seen:
        return
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    _databases_seen.add((server.host, server.port, database))


def warehouse_params(settings: Settings | None = None) -> PgParams:
    """The warehouse: WAREHOUSE_URL, else the embedded server's `warehouse` database (created)."""
    settings = settings or get_settings()
    if settings.warehouse_url is not None:
        return parse_url(settings.warehouse_url.get_secret_value())
    server = start_embedded(settings)
    ensure_database(server, settings.warehouse_database)
    return PgParams(
        server.host, server.port, server.user, server.password, settings.warehouse_database
    )


def source_params(settings: Settings | None = None) -> PgParams:
    """The core-banking source: SOURCE_URL, else (embedded warehouse only) the demo's `corebank`
    database beside it, created. A server warehouse without SOURCE_URL raises
    SourceNotConfigured: bankdw creates nothing on a server the user did not name."""
    settings = settings or get_settings()
    if settings.source_url is not None:
        return parse_url(settings.source_url.get_secret_value())
    require_source(settings)
    wh = warehouse_params(settings)
    ensure_database(wh, settings.source_database)
    return PgParams(wh.host, wh.port, wh.user, wh.password, settings.source_database)


def require_source(settings: Settings | None = None) -> None:
    """Raise SourceNotConfigured for a server warehouse without SOURCE_URL, before any work."""
    settings = settings or get_settings()
    if settings.source_url is None and not settings.uses_embedded_warehouse:
        raise SourceNotConfigured()


def warehouse_url(settings: Settings | None = None) -> str:
    return warehouse_params(settings).url()


def source_url(settings: Settings | None = None) -> str:
    return source_params(settings).url()


# The oldest PostgreSQL major still maintained. Older servers fail at connect with a message,
# rather than deep in a load with an unknown function or syntax (and after every retry).
MIN_SERVER_VERSION = 140000


class UnsupportedServerError(BankdwError):
    """The server is older than bankdw supports: retrying cannot help."""


def version_text(version_num: int) -> str:
    """server_version_num as people write it: 150004 -> '15.4', 90624 -> '9.6.24'."""
    if version_num >= 100000:
        return f"{version_num // 10000}.{version_num % 10000}"
    return f"{version_num // 10000}.{version_num // 100 % 100}.{version_num % 100}"


def check_server_version(version_num: int, role: str, params: PgParams) -> None:
    """Raise UnsupportedServerError if the server is too old; the message never shows a password."""
    if version_num < MIN_SERVER_VERSION:
        raise UnsupportedServerError(
            f"the {role} ({params.describe()}) runs PostgreSQL {version_text(version_num)}; "
            f"bankdw needs PostgreSQL {version_text(MIN_SERVER_VERSION).removesuffix('.0')} "
            "or later",
            "upgrade the server, or point bankdw at another one",
        )


def _connect(params: PgParams, role: str, setting: str, **kwargs) -> psycopg.Connection:
    try:
        # Tracked: a stopping bankdw cancels what its connections run (see runtime.py).
        conn = track(psycopg.connect(params.url(), **kwargs))
    except psycopg.OperationalError as err:
        # Which database, why, and what to do; whether retrying can help (failures.py).
        raise connection_failure(err, role, params, setting) from err
    try:
        # libpq learnt the version at connect: no query, no cost.
        check_server_version(conn.info.server_version, role, params)
    except UnsupportedServerError:
        conn.close()
        raise
    return conn


def connect_warehouse(settings: Settings | None = None, **kwargs) -> psycopg.Connection:
    return _connect(warehouse_params(settings), "warehouse", "WAREHOUSE_URL", **kwargs)


def connect_source(settings: Settings | None = None, **kwargs) -> psycopg.Connection:
    return _connect(source_params(settings), "source", "SOURCE_URL", **kwargs)


def connect_url(url: str, role: str, setting: str, **kwargs) -> psycopg.Connection:
    """A connection to a URL the user named (`--source-url`), checked like the others."""
    return _connect(parse_url(url), role, setting, **kwargs)


def describe_warehouse(settings: Settings | None = None) -> str:
    """Which warehouse a command targets, without starting or connecting to anything, and never
    with the password: `host db.internal, port 5432, database warehouse`, or the embedded one."""
    settings = settings or get_settings()
    if settings.warehouse_url is not None:
        return parse_url(settings.warehouse_url.get_secret_value()).describe()
    return f"embedded PostgreSQL in {_pgdata(settings)}, database {settings.warehouse_database}"


def describe_source(settings: Settings | None = None) -> str:
    """Which source a command reads, like describe_warehouse."""
    settings = settings or get_settings()
    if settings.source_url is not None:
        return parse_url(settings.source_url.get_secret_value()).describe()
    if not settings.uses_embedded_warehouse:
        return "none (SOURCE_URL is not set)"
    return f"the demo bank, database {settings.source_database} beside the warehouse"
