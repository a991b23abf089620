"""SQLMesh on the warehouse: plan/apply, run and audit, with failures raised (not returned).

SQLMesh has no lock of its own around plans and runs on Postgres (sqlmesh issue 3866): a
`Transformation` holds the warehouse's SQLMesh lock (sqlmesh_lock.py) from before it publishes
new batches until its last step ends.
"""

from __future__ import annotations

import hashlib
import logging
import os
import typing as t
from dataclasses import dataclass, field
from datetime import datetime

from flows.load import apply_ops_schema
from flows.publication import Publication, publish_batches
from flows.settings import Settings, get_settings
from flows.warehouse import connect_warehouse, warehouse_params

if t.TYPE_CHECKING:
    from sqlmesh import Context


class TransformError(RuntimeError):
    """A SQLMesh step failed; the message names the step, the model and the cause.

    `retryable` is False when retrying cannot help (an audit found bad data).
    """

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class FailureLog:
    """What SQLMesh reported as failed while a step ran."""

    errors: list[str] = field(default_factory=list)


def export_connection_env(settings: Settings | None = None) -> dict[str, str]:
    """Put the warehouse connection (BANKDW_PG*) and the settings the models share
    (BANKDW_BANK_TIMEZONE) where config.yaml reads them."""
    settings = settings or get_settings()
    params = warehouse_params(settings)
    env = {
        "BANKDW_BANK_TIMEZONE": settings.bank_timezone,
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


# Called with (model, seconds) as SQLMesh finishes evaluating (and auditing) a model: the
# incremental benchmark times the layers with it.
evaluation_listeners: list[t.Callable[[str, float], None]] = []


def _console(log: FailureLog):  # type: ignore[no-untyped-def]
    """SQLMesh's console, keeping the failures to raise them with a cause.

    Quiet unless --verbose: a line per model and per audit on every run tells a person nothing
    they act on (the run summary has the counts; a failure is raised with its model and audit).
    Its warnings go to the log (and the screen) instead.
    """
    from sqlmesh.core.console import NoopConsole, TerminalConsole

    from flows.logs import verbose

    base = TerminalConsole if verbose() else NoopConsole

    class RecordingConsole(base):  # type: ignore[valid-type, misc]
        def log_failed_models(self, errors):  # type: ignore[no-untyped-def]
            log.errors.extend(describe_failure(error) for error in errors)
            super().log_failed_models(errors)

        def update_snapshot_evaluation_progress(
            self, snapshot, interval, batch_idx, duration_ms, *args, **kwargs
        ):  # type: ignore[no-untyped-def,override]
            for listener in evaluation_listeners:
                listener(snapshot.name, (duration_ms or 0) / 1000)
            super().update_snapshot_evaluation_progress(
                snapshot, interval, batch_idx, duration_ms, *args, **kwargs
            )

        def log_error(self, message: str, *args, **kwargs) -> None:  # type: ignore[override]
            log.errors.append(str(message).strip())
            super().log_error(message, *args, **kwargs)

        def log_warning(self, short_message: str, *args, **kwargs) -> None:  # type: ignore[override]
            if base is NoopConsole:
                logging.getLogger("sqlmesh").warning("%s", short_message)
            super().log_warning(short_message, *args, **kwargs)

    return RecordingConsole()


def open_context(settings: Settings | None = None, log: FailureLog | None = None) -> Context:
    """A SQLMesh Context on the warehouse. Hold the SQLMesh lock while it plans or runs."""
    from sqlmesh import Context
    from sqlmesh.core.console import set_console

    settings = settings or get_settings()
    # SQLMesh connects on its own: check the server's version first, as bankdw's connections do.
    connect_warehouse(settings).close()
    export_connection_env(settings)
    # SQLMesh's console is process-global; plans and runs are serialised, so one at a time is safe.
    set_console(_console(log or FailureLog()))
    return Context(paths=str(settings.project_root), gateway=settings.sqlmesh_gateway)


def project_fingerprint(settings: Settings) -> str:
    """A digest of what decides SQLMesh's work: the project's files, the settings the models read
    (BANK_TIMEZONE) and SQLMesh's version."""
    from importlib.metadata import version

    root = settings.project_root
    # SQLMesh's version too: a new one may want a plan (a migration) where the files did not change.
    digest = hashlib.sha256(f"{settings.bank_timezone}|{version('sqlmesh')}".encode())
    files = [root / "config.yaml"]
    for folder in ("models", "macros", "audits"):
        files += sorted(
            p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _raise(step: str, log: FailureLog, fallback: str, retryable: bool = True) -> t.NoReturn:
    detail = "; ".join(dict.fromkeys(log.errors)) or fallback
    raise TransformError(f"{step} failed: {detail}", retryable=retryable)


class Transformation:
    """One transformation of the warehouse: the SQLMesh lock, one Context, one execution time.

    Entering takes the warehouse's SQLMesh lock (waiting, and saying for whom, if another run
    holds it) and publishes the batches committed since the last transformation; plan, run and
    audit then share one Context and the execution time of that publication (see
    publication.py). Leaving closes the Context and releases the lock.
    """

    def __init__(
        self,
        purpose: str,
        settings: Settings | None = None,
        on_wait: t.Callable[[str], None] | None = None,
    ) -> None:
        from flows.sqlmesh_lock import SQLMeshLock

        self.settings = settings or get_settings()
        self.lock = SQLMeshLock(purpose, self.settings, on_wait)
        self.log = FailureLog()
        self._context: Context | None = None
        self.publication: Publication | None = None

    def open(self) -> Transformation:
        """Take the lock and publish (idempotent: `with` on an open one keeps it)."""
        if self.lock.held:
            return self
        self.lock.acquire()
        try:
            self.publish()
        except BaseException:
            self.lock.release()
            raise
        return self

    def __enter__(self) -> Transformation:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._context is not None:
                self._context.close()
        finally:
            self._context = None
            self.lock.release()

    @property
    def context(self) -> Context:
        if self._context is None:
            self._context = open_context(self.settings, self.log)
        return self._context

    @property
    def execution_time(self) -> datetime:
        assert self.publication is not None, "publish() first"
        return self.publication.execution_time

    def publish(self) -> Publication:
        """Publish what committed since the last transformation (under the lock)."""
        from flows.extract.feed_tables import ensure_feed_tables
        from flows.warehouse import connect_warehouse

        self.lock.ensure_held()
        with connect_warehouse(self.settings, autocommit=True) as conn:
            with conn.transaction():
                apply_ops_schema(conn)
            ensure_feed_tables(conn, self.settings.feed_record_source)
            self.publication = publish_batches(conn)
        return self.publication

    def _last_run(self, environment: str) -> tuple[str, datetime] | None:
        from flows.warehouse import connect_warehouse

        with connect_warehouse(self.settings) as conn:
            return conn.execute(
                "select fingerprint, execution_time from ops.sqlmesh_runs where environment = %s",
                (environment,),
            ).fetchone()

    def applied(self, environment: str) -> bool:
        """The last successful run of `environment` ran these very project files: a plan would
        change nothing, and only backfill what the run does anyway (twice the work, and the
        plan stops at the last whole interval)."""
        last = self._last_run(environment)
        return last is not None and last[0] == project_fingerprint(self.settings)

    def up_to_date(self, environment: str) -> bool:
        """The last successful run of `environment` ran these project files at this execution
        time: SQLMesh would find nothing to do, so it is not even loaded."""
        return self._last_run(environment) == (
            project_fingerprint(self.settings),
            self.execution_time,
        )

    def forget_runs(self) -> None:
        """After SQLMesh ran by hand (whatever it changed), the next run plans again."""
        from flows.warehouse import connect_warehouse

        with connect_warehouse(self.settings) as conn:
            conn.execute("delete from ops.sqlmesh_runs")

    def _record_run(self, environment: str) -> None:
        from flows.warehouse import connect_warehouse

        with connect_warehouse(self.settings) as conn:
            conn.execute(
                """
                insert into ops.sqlmesh_runs (environment, fingerprint, execution_time)
                values (%s, %s, %s)
                on conflict (environment) do update
                set fingerprint = excluded.fingerprint, execution_time = excluded.execution_time,
                    finished_at = clock_timestamp()
                """,
                (environment, project_fingerprint(self.settings), self.execution_time),
            )

    def _step(self) -> None:
        """Before each step: the lock is still ours, and no error of a previous step lingers."""
        self.lock.ensure_held()
        self.log.errors.clear()

    def plan(self, environment: str = "prod") -> list[str]:
        """Plan the project against `environment` and apply it (backfilling what changed).

        Returns the names of the models the plan touched. Skipped when the environment's last
        successful run used these very project files: nothing is there to plan, and the run
        processes the new intervals (a plan would evaluate every model once more, up to the last
        whole hour, only for the run to evaluate them again for the hour in progress).
        """
        self._step()
        if self.applied(environment):
            return []
        step = f"sqlmesh plan ({environment})"
        try:
            plan = self.context.plan(
                environment,
                execution_time=self.execution_time,
                auto_apply=True,
                no_prompts=True,
                run=False,
                skip_tests=True,
            )
        except Exception as err:  # SQLMesh raises its own types; keep the cause in the message
            self.log.errors.append(str(err).strip())
            self._discard_context()
            _raise(step, self.log, type(err).__name__)
        if self.log.errors:
            _raise(step, self.log, "see the log above")
        return sorted(s.name for s in plan.new_snapshots)

    def run(self, environment: str = "prod") -> bool:
        """Run every model for the intervals due up to the execution time, including today's
        partial one (ignore_cron). `Context.run()` returns a status instead of raising: a
        failure becomes TransformError here, so that Prefect retries and the flow fails.
        Returns False when there was nothing to run (SQLMesh not even loaded)."""
        self._step()
        if self.up_to_date(environment):
            return False
        step = f"sqlmesh run ({environment})"
        try:
            status = self.context.run(
                environment,
                execution_time=self.execution_time,
                end=self.execution_time,
                ignore_cron=True,
            )
        except Exception as err:
            self.log.errors.append(str(err).strip())
            self._discard_context()
            _raise(step, self.log, type(err).__name__)
        if status.is_failure or self.log.errors:
            audit_failed = any("audit " in e for e in self.log.errors)
            _raise(step, self.log, "see the log above", retryable=not audit_failed)
        self._record_run(environment)
        return True

    def rebuild(self, models: list[str], environment: str = "prod") -> None:
        """Rebuild `models` (and what depends on them) from raw, in one pass, then run on.

        SQLMesh's restatement stops at the last whole interval: the clock then moves a tick, so
        that the run redoes the interval in progress too.
        """
        from flows.publication import tick
        from flows.warehouse import connect_warehouse

        self._step()
        step = f"rebuild ({environment})"
        try:
            self.context.plan(
                environment,
                restate_models=models,
                execution_time=self.execution_time,
                auto_apply=True,
                no_prompts=True,
                skip_tests=True,
            )
        except Exception as err:
            self.log.errors.append(str(err).strip())
            self._discard_context()
            _raise(step, self.log, type(err).__name__)
        with connect_warehouse(self.settings, autocommit=True) as conn:
            self.publication = tick(conn)
        self.run(environment)

    def _discard_context(self) -> None:
        """After SQLMesh raised, a retry starts from a fresh Context (and connection)."""
        if self._context is not None:
            try:
                self._context.close()
            finally:
                self._context = None
