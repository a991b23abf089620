"""Database roles beside the pipeline's own: the read-only analyst role on prod's gold, and (for
`bankdw init` on a server) the role the pipeline writes as."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from flows.load import SQL_DIR

log = logging.getLogger(__name__)

ANALYST = "analyst"
PIPELINE = "bankdw_pipeline"


class CannotCreateRoles(RuntimeError):
    """The connected role may not create the roles `bankdw init` needs."""


class NotDatabaseOwner(RuntimeError):
    """The connected role may not grant on the warehouse database (PostgreSQL only warns)."""


def _may_grant_on_database(conn: psycopg.Connection) -> bool:
    """A superuser, or a member of the database's owner: a GRANT by anyone else grants nothing
    and only warns, so it is checked before."""
    return conn.execute(
        "select r.rolsuper or pg_has_role(current_user, d.datdba, 'member')"
        " from pg_roles r, pg_database d"
        " where r.rolname = current_user and d.datname = current_database()"
    ).fetchone()[0]


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


@dataclass
class InitResult:
    """What `bankdw init` found and did, for its report."""

    database: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    pipeline_can_login: bool = False
    password_set: bool = False


def init_roles(conn: psycopg.Connection, pipeline_password: str | None = None) -> InitResult:
    """Create the analyst and pipeline roles from sql/roles and let them into this database.

    Idempotent: a role that exists is kept as it is; grants are repeated. `conn` is an autocommit
    connection to the warehouse database as a role that may create roles (a superuser, or
    CREATEROLE and the database's owner). With `pipeline_password`, the pipeline's role may log
    in with it: the server receives its SCRAM hash, computed here, never the password itself (a
    statement may be logged by the server).
    """
    wanted = (ANALYST, PIPELINE)
    result = InitResult(database=conn.info.dbname)
    result.existing = [r for r in wanted if _exists(conn, r)]
    result.created = [r for r in wanted if r not in result.existing]
    if (result.created or pipeline_password) and not _may_create_roles(conn):
        raise CannotCreateRoles(conn.info.user)
    if not _may_grant_on_database(conn):
        raise NotDatabaseOwner(conn.info.user)
    with contextlib.suppress(psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject):
        conn.execute((SQL_DIR / "roles" / "analyst.sql").read_text())
    conn.execute((SQL_DIR / "roles" / "pipeline.sql").read_text())
    if pipeline_password:
        hashed = conn.pgconn.encrypt_password(
            pipeline_password.encode(), PIPELINE.encode(), b"scram-sha-256"
        ).decode()
        conn.execute(
            sql.SQL("alter role {} login password {}").format(
                sql.Identifier(PIPELINE), sql.Literal(hashed)
            )
        )
        result.password_set = True
    result.pipeline_can_login = conn.execute(
        "select rolcanlogin from pg_roles where rolname = %s", (PIPELINE,)
    ).fetchone()[0]
    return result
