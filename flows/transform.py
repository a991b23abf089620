"""SQLMesh on the warehouse: plan/apply, run and audit, with failures raised (not returned).

SQLMesh has no lock of its own around plans and runs on Postgres (sqlmesh issue 3866): callers
hold the Prefect concurrency limit named in the settings while any of these run (see pipeline.py).
"""

from __future__ import annotations

import os
import typing as t
from dataclasses import dataclass, field

from flows.settings import Settings, get_settings
from flows.warehouse import connect_warehouse, warehouse_params

if t.TYPE_CHECKING:
    from sqlmesh import Context


class TransformError(RuntimeError):
    """A SQLMesh step failed; the message names the step, the model and the cause."""


@dataclass
class FailureLog:
    """What SQLMesh reported as failed while a step ran."""

    errors: list[str] = field(default_factory=list)


def export_connection_env(settings: Settings | None = None) -> dict[str, str]:
    """Put the warehouse connection where config.yaml reads it (BANKDW_PG* variables)."""
    params = warehouse_params(settings)
    env = {
        "BANKDW_PGHOST": params.host,
        "BANKDW_PGPORT": str(params.port),
        "BANKDW_PGUSER": params.user,
        "BANKDW_PGPASSWORD": params.password,
        "BANKDW_PGDATABASE": params.database,
    }
    os.environ.update(env)
    return env


def describe_failure(error: Exception) -> str:
    """'model: what failed', with each failing audit's name, arguments and row count."""
    node = getattr(error, "node", None)
    model = getattr(node, "snapshot_name", None) or str(node or "sqlmesh")
    model = model.replace('"', "").split(".", 1)[-1]  # "warehouse"."vault"."x" -> vault.x
    cause = error.__cause__ or error
    audits = getattr(cause, "errors", None)
    if audits:
        parts = []
        for audit in audits:
            args = ", ".join(
                f"{k}={v.sql() if hasattr(v, 'sql') else v}"
                for k, v in (audit.audit_args or {}).items()
            )
            rows = "row" if audit.count == 1 else "rows"
            parts.append(f"audit {audit.audit_name}({args}) found {audit.count} bad {rows}")
        return f"{model}: " + "; ".join(parts)
    return f"{model}: {str(cause).strip()}"


def _console(log: FailureLog):
    from sqlmesh.core.console import TerminalConsole

    class RecordingConsole(TerminalConsole):
        """SQLMesh's terminal console that also keeps the failures, to raise them with a cause."""

        def log_failed_models(self, errors):  # type: ignore[no-untyped-def]
            log.errors.extend(describe_failure(error) for error in errors)
            super().log_failed_models(errors)

        def log_error(self, message: str, *args, **kwargs) -> None:  # type: ignore[override]
            log.errors.append(str(message).strip())
            super().log_error(message, *args, **kwargs)

    return RecordingConsole()


def open_context(settings: Settings | None = None, log: FailureLog | None = None) -> Context:
    from sqlmesh import Context
    from sqlmesh.core.console import set_console

    settings = settings or get_settings()
    # SQLMesh connects on its own: check the server's version first, as bankdw's connections do.
    connect_warehouse(settings).close()
    export_connection_env(settings)
    # SQLMesh's console is process-global; plans and runs are serialised, so one at a time is safe.
    set_console(_console(log or FailureLog()))
    return Context(paths=str(settings.project_root), gateway=settings.sqlmesh_gateway)


def _raise(step: str, log: FailureLog, fallback: str) -> t.NoReturn:
    detail = "; ".join(dict.fromkeys(log.errors)) or fallback
    raise TransformError(f"{step} failed: {detail}")


def plan_and_apply(environment: str = "prod", settings: Settings | None = None) -> list[str]:
    """Plan the project against `environment` and apply it (backfilling what changed).

    Returns the names of the models the plan touched.
    """
    log = FailureLog()
    context = open_context(settings, log)
    try:
        plan = context.plan(
            environment,
            auto_apply=True,
            no_prompts=True,
            run=False,
            skip_tests=True,
        )
    except Exception as err:  # SQLMesh raises its own types; keep the cause in the message
        log.errors.append(str(err).strip())
        _raise(f"sqlmesh plan ({environment})", log, type(err).__name__)
    finally:
        context.close()
    if log.errors:
        _raise(f"sqlmesh plan ({environment})", log, "see the log above")
    return sorted(s.name for s in plan.new_snapshots)


def run_models(environment: str = "prod", settings: Settings | None = None) -> None:
    """Run every model for the intervals due, including today's partial one (ignore_cron).

    `Context.run()` returns a status instead of raising: a failure becomes TransformError here so
    that Prefect retries and the flow fails.
    """
    log = FailureLog()
    context = open_context(settings, log)
    try:
        status = context.run(environment, ignore_cron=True)
    finally:
        context.close()
    if status.is_failure or log.errors:
        _raise(f"sqlmesh run ({environment})", log, "see the log above")


def audit_models(environment: str = "prod", settings: Settings | None = None) -> None:
    """Re-run every model's audits over today's data; a failing audit raises TransformError."""
    from datetime import date, timedelta

    log = FailureLog()
    context = open_context(settings, log)
    try:
        today = date.today()
        ok = context.audit(start=today - timedelta(days=1), end=today)
    finally:
        context.close()
    if not ok or log.errors:
        _raise("sqlmesh audit", log, "an audit failed")
