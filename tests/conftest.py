"""Shared fixtures: a real PostgreSQL (embedded, or the server WAREHOUSE_URL names) and one
Prefect test harness for the whole session."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from flows.settings import reset_settings
from flows.sqlmesh_lock import HOLDER_VARIABLE
from flows.warehouse import PgParams, parse_url

_names = itertools.count()
# Read once, before any scenario points WAREHOUSE_URL at a database of its own.
_GIVEN_SERVER_URL = os.environ.get("WAREHOUSE_URL")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgParams]:
    """Where tests create their databases: WAREHOUSE_URL's server, else a fresh embedded one."""
    if _GIVEN_SERVER_URL:
        yield parse_url(_GIVEN_SERVER_URL)
        return
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    socket_dir = str(server.get_postmaster_info().socket_dir)
    yield PgParams(host=socket_dir, port=5432, user="postgres", password="", database="postgres")
    server.cleanup()


@pytest.fixture(scope="session")
def new_database(pg_server: PgParams):
    """A factory of empty databases on the session's server; returns a libpq URL."""

    def create(prefix: str = "db") -> str:
        name = f"{prefix}_{os.getpid()}_{next(_names)}"
        with psycopg.connect(pg_server.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        return pg_server.url(name)

    return create


# What `bankdw` sets in its own process (it is a command: the process ends with it). Tests that
# call the CLI in-process would otherwise hand these to every later test's subprocesses: a leaked
# PREFECT_LOGGING_LEVEL=WARNING once kept a deployment run's INFO logs off its server.
_CLI_PROCESS_VARIABLES = (
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "PREFECT_LOGGING_LEVEL",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    HOLDER_VARIABLE,
)


@pytest.fixture(autouse=True)
def restore_cli_process_variables() -> Iterator[None]:
    before = {name: os.environ.get(name) for name in _CLI_PROCESS_VARIABLES}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@dataclass(frozen=True)
class Bank:
    """A warehouse and its core-bank source, each a database of its own."""

    warehouse_url: str
    source_url: str


@pytest.fixture(scope="module")
def bank_factory(new_database, tmp_path_factory) -> Iterator:
    """Point the settings at a fresh warehouse + source pair (restored after the module).

    WAREHOUSE_DIR goes to a temporary folder too, so tests never write the project's .warehouse
    (GX's validation store and Data Docs live there).
    """
    patch = pytest.MonkeyPatch()

    def create(name: str) -> Bank:
        bank = Bank(new_database(f"wh_{name}"), new_database(f"src_{name}"))
        patch.setenv("WAREHOUSE_URL", bank.warehouse_url)
        patch.setenv("SOURCE_URL", bank.source_url)
        patch.setenv("WAREHOUSE_DIR", str(tmp_path_factory.mktemp(f"dir_{name}")))
        reset_settings()
        return bank

    yield create
    patch.undo()
    reset_settings()


@dataclass(frozen=True)
class BuiltBank(Bank):
    """A bank whose warehouse one `bankdw run` built: read it, never run it again (shared)."""

    build_seconds: float


@pytest.fixture(scope="session")
def default_bank_60_days(new_database, tmp_path_factory) -> Iterator[BuiltBank]:
    """The default simulation (1,000 customers, seed 42, bad records and AML cases at their
    default rates, the CRM feed files) over 60 days, built by one run: the issue's ground truth
    for gold (AML recall, reconciliation). Built once per session, shared by the tests that only
    read it; a test that changes a warehouse builds its own."""
    import time

    from flows.pipeline import run_flow
    from flows.simulate import simulate

    bank = Bank(new_database("wh_default60"), new_database("src_default60"))
    landing = tmp_path_factory.mktemp("landing_default60")
    patch = pytest.MonkeyPatch()
    patch.setenv("WAREHOUSE_URL", bank.warehouse_url)
    patch.setenv("SOURCE_URL", bank.source_url)
    patch.setenv("WAREHOUSE_DIR", str(tmp_path_factory.mktemp("dir_default60")))
    patch.setenv("LANDING_DIR", str(landing))
    reset_settings()
    try:
        simulate(bank.source_url, 60, landing_dir=landing)
        started = time.monotonic()
        run_flow()
        seconds = time.monotonic() - started
    finally:
        patch.undo()
        reset_settings()
    yield BuiltBank(bank.warehouse_url, bank.source_url, seconds)
