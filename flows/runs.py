"""ops.pipeline_runs: one row per flow run of the pipeline, with its figures, and its liveness.

A flow inserts its row as 'running' when it starts and finishes it as 'completed' or 'failed'
when it ends, with what the run did: batches and rows loaded to raw or quarantined (from
ops.batches), rows SQLMesh wrote per layer (its own cursor counts, collected by the
Transformation), the DQ score (from ops.dq_results), audits passed and failed (ops.audit_results)
and alerts raised and sent (ops.alerts). Every figure is read by the run's flow run id through an
index: the cost of recording a run does not grow with history. The same figures become a Prefect
table artifact of the flow run.

A process killed half-way (kill -9, a machine lost) cannot finish its row. So that such a row
never looks like success, nor like a run still going, the flow holds a session-level advisory
lock keyed by its run_id on a connection of its own while it runs: the lock dies with the
process. A 'running' row whose lock nobody holds is a crash: `bankdw status` shows it as
'crashed', and the next run's start writes it so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime

import psycopg

from flows.settings import Settings, get_settings

log = logging.getLogger(__name__)

# pg_advisory_lock(int4, int4): shows in pg_locks as classid = RUN_LOCK_SPACE, objid = the key,
# objsubid = 2 (the SQLMesh lock uses another space: flows/sqlmesh_lock.py).
RUN_LOCK_SPACE = 0x72756E73  # "runs"
_KEY_MODULUS = 2147483647  # run ids folded into a non-negative int4

# The SQL that says whether the run of row `r` is alive: someone holds its lock. (mod(), not
# `%`: the text goes into queries with parameters.)
ALIVE = f"""
    exists (
        select 1 from pg_locks as l
        where l.locktype = 'advisory' and l.granted
          and l.database = (select oid from pg_database where datname = current_database())
          and l.classid = {RUN_LOCK_SPACE}::oid and l.objid = mod(r.run_id, {_KEY_MODULUS})::oid
          and l.objsubid = 2)
"""


@dataclass
class RunFigures:
    """What one flow run did, as stored in ops.pipeline_runs."""

    batches: int = 0
    batches_failed: int = 0
    rows_in: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_deleted: int = 0
    silver_rows: int | None = None  # None: the run did not transform
    vault_rows: int | None = None
    gold_rows: int | None = None
    dq_checks: int = 0
    dq_score: float | None = None  # None: no rule was evaluated
    audits_passed: int = 0
    audits_failed: int = 0
    alerts_raised: int = 0
    alerts_sent: int = 0


def read_figures(
    conn: psycopg.Connection, flow_run_id: str, layer_rows: dict[str, int] | None = None
) -> RunFigures:
    """The figures of one flow run, each read by its flow run id (indexed)."""
    figures = RunFigures()
    (
        figures.batches,
        figures.batches_failed,
        figures.rows_in,
        figures.rows_loaded,
        figures.rows_quarantined,
        figures.rows_deleted,
    ) = conn.execute(
        """
        select count(*), count(*) filter (where status = 'failed'),
               coalesce(sum(rows_in) filter (where status = 'committed'), 0),
               coalesce(sum(rows_loaded) filter (where status = 'committed'), 0),
               coalesce(sum(rows_quarantined) filter (where status = 'committed'), 0),
               coalesce(sum(rows_deleted) filter (where status = 'committed'), 0)
        from ops.batches where flow_run_id = %s
        """,
        (flow_run_id,),
    ).fetchone()
    # The DQ score: the share of the contract's rule evaluations that passed, over every batch
    # the run judged (a refused batch too: its rows were received, and were bad).
    checks, failed = conn.execute(
        """
        select coalesce(sum(d.evaluated), 0), coalesce(sum(d.failed), 0)
        from ops.batches as b join ops.dq_results as d on d.batch_id = b.batch_id
        where b.flow_run_id = %s
        """,
        (flow_run_id,),
    ).fetchone()
    checks, failed = int(checks), int(failed)
    figures.dq_checks = checks
    figures.dq_score = round(100.0 * (checks - failed) / checks, 2) if checks else None
    figures.audits_passed, figures.audits_failed = conn.execute(
        "select count(*) filter (where passed), count(*) filter (where not passed) "
        "from ops.audit_results where flow_run_id = %s",
        (flow_run_id,),
    ).fetchone()
    figures.alerts_raised, figures.alerts_sent = conn.execute(
        "select count(*), count(*) filter (where cardinality(channels) > 0) "
        "from ops.alerts where flow_run_id = %s",
        (flow_run_id,),
    ).fetchone()
    if layer_rows is not None:
        figures.silver_rows = layer_rows.get("silver", 0)
        figures.vault_rows = layer_rows.get("vault", 0)
        figures.gold_rows = layer_rows.get("gold", 0)
    return figures


def mark_crashed(conn: psycopg.Connection) -> int:
    """Write 'crashed' on every 'running' row whose process is gone (its lock is free)."""
    cur = conn.execute(
        f"update ops.pipeline_runs as r set status = 'crashed', "
        f"error = 'the process ended without finishing the run (killed, or lost its connection)' "
        f"where r.status = 'running' and not {ALIVE}"
    )
    return cur.rowcount


@dataclass
class RunRecord:
    """The ops.pipeline_runs row of one flow run: start() when the flow starts, finish() at its
    end. Between the two its liveness lock is held on a connection of its own."""

    flow_name: str
    flow_run_id: str | None
    flow_run_name: str | None = None
    settings: Settings = field(default_factory=get_settings)
    run_id: int | None = None
    started_at: datetime | None = None
    layer_rows: dict[str, int] | None = None  # rows SQLMesh wrote per layer, when it ran
    _conn: psycopg.Connection | None = field(default=None, repr=False)

    def start(self) -> RunRecord:
        from flows.load import apply_ops_schema
        from flows.warehouse import connect_warehouse

        conn = connect_warehouse(
            self.settings, autocommit=True, application_name=f"bankdw run {self.flow_run_id}"[:63]
        )
        try:
            with conn.transaction():
                apply_ops_schema(conn)
            with conn.transaction():
                mark_crashed(conn)
                # The lock is taken before the row commits: nobody can see the row unlocked.
                self.run_id, self.started_at = conn.execute(
                    "insert into ops.pipeline_runs (flow_run_id, flow_run_name, flow_name) "
                    "values (%s, %s, %s) returning run_id, started_at",
                    (self.flow_run_id, self.flow_run_name, self.flow_name),
                ).fetchone()
                conn.execute(
                    "select pg_advisory_lock(%s, %s)",
                    (RUN_LOCK_SPACE, self.run_id % _KEY_MODULUS),
                )
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return self

    def finish(
        self, status: str, error: str | None = None, layer_rows: dict[str, int] | None = None
    ) -> RunFigures | None:
        """Write the run's end and figures (on a fresh connection: the lock's may have dropped
        with a server restart), then release the lock. Returns the figures, or None if the
        warehouse could not take them (the row then shows as crashed)."""
        from flows.warehouse import connect_warehouse

        figures = None
        try:
            with connect_warehouse(self.settings) as conn:
                figures = (
                    read_figures(conn, self.flow_run_id, layer_rows)
                    if self.flow_run_id
                    else RunFigures()
                )
                values = asdict(figures)
                columns = ", ".join(f"{name} = %({name})s" for name in values)
                conn.execute(
                    f"update ops.pipeline_runs set status = %(status)s, "
                    f"finished_at = clock_timestamp(), error = %(error)s, {columns} "
                    f"where run_id = %(run_id)s",
                    {**values, "status": status, "error": error, "run_id": self.run_id},
                )
        except Exception as err:
            log.warning("run %s not recorded as %s: %s", self.run_id, status, err)
        finally:
            self.release()
        return figures

    def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.closed:
            return
        try:
            conn.execute(
                "select pg_advisory_unlock(%s, %s)", (RUN_LOCK_SPACE, self.run_id % _KEY_MODULUS)
            )
        except psycopg.Error:
            pass  # the connection is gone, and the lock with it
        finally:
            conn.close()


def refresh_alerts(flow_run_id: str | None, settings: Settings | None = None) -> None:
    """Count a finished run's alerts again: a failed flow's hook sends its alerts after the
    row was finished."""
    from flows.warehouse import connect_warehouse

    if flow_run_id is None:
        return
    try:
        with connect_warehouse(settings) as conn:
            conn.execute(
                """
                update ops.pipeline_runs
                set (alerts_raised, alerts_sent) = (
                    select count(*), count(*) filter (where cardinality(channels) > 0)
                    from ops.alerts where flow_run_id = %(id)s)
                where flow_run_id = %(id)s
                """,
                {"id": flow_run_id},
            )
    except Exception as err:
        log.warning("alert counts of flow run %s not updated: %s", flow_run_id, err)


@contextmanager
def recorded_run(flow_name: str) -> Iterator[RunRecord]:
    """Record the flow run that calls it in ops.pipeline_runs, from start to end.

    Inside a flow: `with recorded_run("bankdw-run") as record: ...`; set `record.layer_rows`
    with what SQLMesh wrote. The end of the block finishes the row ('completed', or 'failed' with
    the error when the block raised) and publishes the figures as a Prefect table artifact.
    """
    from prefect.runtime import flow_run

    from flows import logs

    flow_run_id = flow_run.id
    logs.set_correlation_id(flow_run_id)
    try:
        record = RunRecord(flow_name, flow_run_id, flow_run.name).start()
        log.info("%s: run %s started (ops.pipeline_runs)", flow_name, record.run_id)
        try:
            yield record
        except BaseException as err:
            figures = record.finish("failed", _describe(err), record.layer_rows)
            publish_artifact(record, "failed", figures)
            log.info("%s: run %s failed", flow_name, record.run_id)
            raise
        figures = record.finish("completed", None, record.layer_rows)
        publish_artifact(record, "completed", figures)
        log.info("%s: run %s completed", flow_name, record.run_id)
    finally:
        logs.set_correlation_id(None)


def _describe(err: BaseException) -> str:
    """The error as the run's row keeps it: its type and message, cut short. Messages of bankdw's
    errors describe connections without passwords (pgurl.describe), never a URL."""
    text = f"{type(err).__name__}: {err}".strip()
    return text[:2000]


ARTIFACT_KEY = "bankdw-run-figures"


def artifact_rows(status: str, figures: RunFigures | None) -> list[dict[str, str]]:
    """The figures as a two-column table: what and value."""
    rows = [{"figure": "status", "value": status}]
    for name, value in asdict(figures or RunFigures()).items():
        shown = "" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        rows.append({"figure": name, "value": shown})
    return rows


def publish_artifact(record: RunRecord, status: str, figures: RunFigures | None) -> None:
    """The run's figures as a Prefect table artifact of the flow run (key ARTIFACT_KEY). Never
    raises: the run's outcome is the flow's to report, not the artifact's."""
    from prefect.artifacts import create_table_artifact

    try:
        create_table_artifact(
            table=artifact_rows(status, figures),
            key=ARTIFACT_KEY,
            description=f"{record.flow_name} run {record.run_id}: {status} "
            "(ops.pipeline_runs; `bankdw status`)",
        )
    except Exception as err:
        log.warning("run figures not published as an artifact: %s", err)
