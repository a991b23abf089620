"""SQLMesh on the warehouse: plan/apply, run and audit, with failures raised (not returned).

SQLMesh has no lock of its own around plans and runs on Postgres (sqlmesh issue 3866): a
`Transformation` holds the warehouse's SQLMesh lock (sqlmesh_lock.py) from before it publishes
new batches until its last step ends.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import typing as t
import uuid
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

    def __init__(self, message: str, retryable: bool = True, audit_failed: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.audit_failed = audit_failed  # an audit found bad data (flows/alerts.py: its own alert)


@dataclass
class FailureLog:
    """What SQLMesh reported while a transformation ran: the failures of the current step, and
    (over every step) the rows each layer was written and each audit's outcome."""

    errors: list[str] = field(default_factory=list)
    # Rows SQLMesh's cursors reported written, per layer (`silver`, `vault`, `gold`): its own
    # counts, free (no count(*) of any table). Views write nothing.
    rows_written: dict[str, int] = field(default_factory=dict)
    # (model, audit) -> (passed, bad rows), for the audits run and not yet stored.
    audits: dict[tuple[str, str], tuple[bool, int]] = field(default_factory=dict)
    # SQLMesh evaluates models on threads of its own.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wrote(self, model: str, rows: int) -> None:
        layer = model.split(".", 1)[0]
        with self.lock:
            self.rows_written[layer] = self.rows_written.get(layer, 0) + rows

    def audited(self, model: str, audit: str, passed: bool, bad_rows: int = 0) -> None:
        """One audit's outcome for one interval batch: failed in any batch is failed."""
        with self.lock:
            was_passed, was_bad = self.audits.get((model, audit), (True, 0))
            self.audits[(model, audit)] = (was_passed and passed, was_bad + bad_rows)

    def take_audits(self) -> dict[tuple[str, str], tuple[bool, int]]:
        with self.lock:
            taken, self.audits = self.audits, {}
        return taken


def model_name(snapshot_name: str) -> str:
    """'"warehouse"."vault"."x"' -> 'vault.x'."""
    return snapshot_name.replace('"', "").split(".", 1)[-1]


# The settings the models read, as SQLMesh variables (config.yaml `variables`, each from the
# environment variable BANKDW_<NAME>): the bank's zone and the AML rules' thresholds.
MODEL_VARIABLES = (
    "bank_timezone",
    "dormant_after_months",
    "aml_currency",
    "aml_structuring_min_deposits",
    "aml_structuring_min_amount",
    "aml_structuring_max_amount",
    "aml_structuring_window_days",
    "aml_velocity_max_debits",
    "aml_velocity_count_window_minutes",
    "aml_velocity_max_amount",
    "aml_velocity_amount_window_hours",
    "aml_pass_through_min_credit",
    "aml_pass_through_share",
    "aml_pass_through_window_hours",
    "aml_new_account_min_credit",
    "aml_new_account_days",
    "aml_fan_min_accounts",
    "aml_fan_window_hours",
    "aml_fan_share",
    "aml_fan_out_min_credit",
)


def model_variables(settings: Settings) -> dict[str, str]:
    """{BANKDW_<NAME>: value} for every setting the models read (MODEL_VARIABLES)."""
    return {f"BANKDW_{name.upper()}": str(getattr(settings, name)) for name in MODEL_VARIABLES}


def export_connection_env(settings: Settings | None = None) -> dict[str, str]:
    """Put the warehouse connection (BANKDW_PG*) and the settings the models share
    (model_variables: BANKDW_BANK_TIMEZONE, BANKDW_DORMANT_AFTER_MONTHS, BANKDW_AML_*) where
    config.yaml reads them."""
    settings = settings or get_settings()
    params = warehouse_params(settings)
    env = {
        **model_variables(settings),
        "BANKDW_PGHOST": params.host,
        "BANKDW_PGPORT": str(params.port),
        "BANKDW_PGUSER": params.user,
        "BANKDW_PGPASSWORD": params.password,
        "BANKDW_PGDATABASE": params.database,
    }
    os.environ.update(env)
    return env


def failed_model(error: Exception) -> str:
    """The model a SQLMesh node failure names (`vault.x`), or 'sqlmesh'."""
    node = getattr(error, "node", None)
    return model_name(getattr(node, "snapshot_name", None) or str(node or "sqlmesh"))


def describe_failure(error: Exception) -> str:
    """'model: what failed', with each failing audit's name, arguments and row count."""
    model = failed_model(error)
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
            for error in errors:
                for audit in getattr(error.__cause__ or error, "errors", None) or []:
                    log.audited(failed_model(error), audit.audit_name, False, audit.count or 0)
            super().log_failed_models(errors)

        def update_snapshot_evaluation_progress(
            self,
            snapshot,
            interval,
            batch_idx,
            duration_ms,
            num_audits_passed=0,
            num_audits_failed=0,
            *args,
            **kwargs,
        ):  # type: ignore[no-untyped-def,override]
            for listener in evaluation_listeners:
                listener(snapshot.name, (duration_ms or 0) / 1000)
            model = model_name(snapshot.name)
            stats = kwargs.get("execution_stats")
            if stats is not None and stats.total_rows_processed:
                log.wrote(model, stats.total_rows_processed)
            _record_audits(log, snapshot, model, num_audits_passed, num_audits_failed)
            super().update_snapshot_evaluation_progress(
                snapshot,
                interval,
                batch_idx,
                duration_ms,
                num_audits_passed,
                num_audits_failed,
                *args,
                **kwargs,
            )

        def log_error(self, message: str, *args, **kwargs) -> None:  # type: ignore[override]
            log.errors.append(str(message).strip())
            super().log_error(message, *args, **kwargs)

        def log_warning(self, short_message: str, *args, **kwargs) -> None:  # type: ignore[override]
            if base is NoopConsole:
                logging.getLogger("sqlmesh").warning("%s", short_message)
            super().log_warning(short_message, *args, **kwargs)

    return RecordingConsole()


def _record_audits(log: FailureLog, snapshot: t.Any, model: str, passed: int, failed: int) -> None:
    """The audits SQLMesh ran on one evaluation of `model`. SQLMesh's console gets counts, not
    names: when none failed, every audit the model declares passed; a blocking audit that failed
    comes with its name through log_failed_models (the evaluation then reports no count), and a
    non-blocking one that failed here is recorded against the model as a whole."""
    if passed + failed == 0:
        return
    declared = [audit.name for audit, _ in getattr(snapshot.model, "audits_with_args", [])]
    if failed == 0 and len(declared) == passed:
        for name in declared:
            log.audited(model, name, True)
    else:
        log.audited(model, f"{failed} of {passed + failed} audits", failed == 0)


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
    (model_variables: the bank's zone, dormancy, the AML thresholds) and SQLMesh's version."""
    from importlib.metadata import version

    root = settings.project_root
    # SQLMesh's version too: a new one may want a plan (a migration) where the files did not change.
    digest = hashlib.sha256(version("sqlmesh").encode())
    for name, value in sorted(model_variables(settings).items()):
        digest.update(f"|{name}={value}".encode())
    files = [root / "config.yaml"]
    for folder in ("models", "macros", "audits"):
        files += sorted(
            p for p in (root / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _raise(
    step: str, log: FailureLog, fallback: str, retryable: bool = True, audit_failed: bool = False
) -> t.NoReturn:
    detail = "; ".join(dict.fromkeys(log.errors)) or fallback
    raise TransformError(f"{step} failed: {detail}", retryable=retryable, audit_failed=audit_failed)


@dataclass
class PlanSummary:
    """What a plan changed in an environment, model by model (names like `gold.dim_account`)."""

    environment: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    directly_modified: dict[str, str] = field(default_factory=dict)  # model -> change category
    indirectly_modified: list[str] = field(default_factory=list)
    backfilled: list[str] = field(default_factory=list)  # models whose intervals it computed

    @classmethod
    def of(cls, environment: str, plan: t.Any) -> PlanSummary:  # plan: sqlmesh Plan
        diff = plan.context_diff
        snapshots = plan.snapshots
        direct = {
            model_name(snapshots[s].name): (
                snapshots[s].change_category.name.lower()
                if snapshots[s].change_category
                else "uncategorized"
            )
            for s in plan.directly_modified
        }
        indirect = {model_name(s.name) for ids in plan.indirectly_modified.values() for s in ids}
        return cls(
            environment,
            added=sorted(model_name(s.name) for s in diff.added),
            removed=sorted(model_name(s.name) for s in diff.removed_snapshots),
            directly_modified=dict(sorted(direct.items())),
            indirectly_modified=sorted(indirect - set(direct)),
            backfilled=sorted({model_name(i.snapshot_id.name) for i in plan.missing_intervals}),
        )

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.directly_modified)


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
        self.last_plan: PlanSummary | None = None  # what the last plan() changed
        # Groups this transformation's rows of ops.audit_results.
        self.id = uuid.uuid4()
        self.environment: str | None = None  # the environment last planned or run

    @property
    def rows_written(self) -> dict[str, int]:
        """Rows SQLMesh wrote per layer while this transformation ran."""
        return dict(self.log.rows_written)

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
            self.store_audits()
            if self._context is not None:
                self._context.close()
        finally:
            self._context = None
            self.lock.release()

    def store_audits(self) -> None:
        """Write the audits run since the last call to ops.audit_results (pass or fail per audit
        and model), with the flow run they ran in. Never raises: a failure to record them must
        not hide the run's own outcome (it is logged)."""
        from flows.warehouse import connect_warehouse

        audits = self.log.take_audits()
        if not audits:
            return
        try:
            from prefect.runtime import flow_run

            flow_run_id = flow_run.id
        except Exception:  # outside a flow (bankdw sqlmesh, tests)
            flow_run_id = None
        try:
            with connect_warehouse(self.settings) as conn, conn.cursor() as cur:
                cur.executemany(
                    """
                    insert into ops.audit_results (transformation_id, flow_run_id, environment,
                                                   model, audit, passed, bad_rows)
                    values (%s, %s, %s, %s, %s, %s, %s)
                    """,
                    [
                        (
                            self.id,
                            flow_run_id,
                            self.environment or "prod",
                            model,
                            audit,
                            passed,
                            None if passed else bad_rows,
                        )
                        for (model, audit), (passed, bad_rows) in sorted(audits.items())
                    ],
                )
        except Exception as err:
            logging.getLogger(__name__).warning("audit results not recorded: %s", err)

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
        self.environment = environment
        self.last_plan = None
        if self.applied(environment):
            self.last_plan = PlanSummary(environment)
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
        self.last_plan = PlanSummary.of(environment, plan)
        if environment == "prod":
            self.grant_readers()
        return sorted(s.name for s in plan.new_snapshots)

    def grant_readers(self) -> None:
        """After prod's views changed: the analyst role reads prod's gold (sql/roles)."""
        from flows.roles import grant_gold_to_analyst
        from flows.warehouse import connect_warehouse

        with connect_warehouse(self.settings, autocommit=True) as conn:
            grant_gold_to_analyst(conn)

    def run(self, environment: str = "prod") -> bool:
        """Run every model for the intervals due up to the execution time, including today's
        partial one (ignore_cron). `Context.run()` returns a status instead of raising: a
        failure becomes TransformError here, so that Prefect retries and the flow fails.
        Returns False when there was nothing to run (SQLMesh not even loaded)."""
        self._step()
        self.environment = environment
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
            _raise(
                step,
                self.log,
                "see the log above",
                retryable=not audit_failed,
                audit_failed=audit_failed,
            )
        self._record_run(environment)
        return True

    def promote(self, source: str = "staging") -> PlanSummary:
        """Make prod what `source` is, as a virtual update: prod's views are pointed at the tables
        `source` built and filled; no table is built and no interval computed.

        `source` is first run up to this transformation's execution time (in its own tables),
        so that prod loses no interval it had. Refused, before any work, when the project files
        are not those `source` was planned with (prod would get something nobody checked in
        `source`); refused too when prod's plan would still compute something.
        """
        self._step()
        step = f"promote ({source} to prod)"
        if source == "prod":
            raise TransformError(f"{step}: prod cannot be promoted to itself", retryable=False)
        staged_env = self.context.state_reader.get_environment(source)
        if staged_env is None:
            raise TransformError(
                f"{step} failed: there is no environment {source}; plan it first "
                f"(bankdw plan {source})",
                retryable=False,
            )
        staged = {s.name: s.snapshot_id for s in staged_env.snapshots}
        local = {s.name: s.snapshot_id for s in self.context.snapshots.values()}
        differ = sorted(
            model_name(n) for n in staged.keys() | local.keys() if staged.get(n) != local.get(n)
        )
        if differ:
            raise TransformError(
                f"{step} refused: the project files are not what {source} was planned with "
                f"({', '.join(differ[:5])}{' …' if len(differ) > 5 else ''}); check out the "
                f"commit {source} was built from, or plan {source} again and check it",
                retryable=False,
            )
        self.run(source)
        self._step()
        context = self.context
        try:
            plan = context.plan_builder(
                "prod", execution_time=self.execution_time, skip_tests=True
            ).build()
            if plan.new_snapshots or plan.missing_intervals:
                work = sorted({model_name(i.snapshot_id.name) for i in plan.missing_intervals})
                raise TransformError(
                    f"{step} refused: prod's plan would compute {', '.join(work) or 'new tables'}"
                    f" instead of reusing {source}'s; run {source} (bankdw plan {source}) and "
                    "promote again",
                    retryable=False,
                )
            context.apply(plan)
        except TransformError:
            raise
        except Exception as err:
            self.log.errors.append(str(err).strip())
            self._discard_context()
            _raise(step, self.log, type(err).__name__)
        self.last_plan = PlanSummary.of("prod", plan)
        self.grant_readers()
        # Prod now holds `source`'s snapshots, complete up to this execution time: as if run.
        self._record_run("prod")
        return self.last_plan

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
