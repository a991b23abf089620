"""Database roles beside the pipeline's own: the read-only analyst role on prod's gold."""

from __future__ import annotations

import contextlib
import logging

import psycopg

from flows.load import SQL_DIR

log = logging.getLogger(__name__)


def _exists(conn: psycopg.Connection, role: str) -> bool:
    return conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone() is not None


def _may_create_roles(conn: psycopg.Connection) -> bool:
    return conn.execute(
        "select rolsuper or rolcreaterole from pg_roles where rolname = current_user"
    ).fetchone()[0]


def grant_gold_to_analyst(conn: psycopg.Connection) -> bool:
    """Let the analyst role read prod's gold (creating the role where the pipeline may).

    Returns whether the grants were made: not when gold does not exist yet, nor when the role is
    missing and the pipeline's role may not create it (an administrator runs
    sql/roles/analyst.sql once).
    """
    if conn.execute("select to_regnamespace('gold') is null").fetchone()[0]:
        return False
    if not _exists(conn, "analyst"):
        if not _may_create_roles(conn):
            log.warning(
                "no role `analyst`: an administrator creates it once with sql/roles/analyst.sql"
            )
            return False
        # Roles are per server: another warehouse on it may create it at the same moment.
        with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
            conn.execute((SQL_DIR / "roles" / "analyst.sql").read_text())
    conn.execute((SQL_DIR / "roles" / "analyst_grants.sql").read_text())
    return True
