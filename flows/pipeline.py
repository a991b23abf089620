"""The top-level Prefect flows. They read like the runbook: simulate (demo only), extract,
transform, audit, summarise. Tasks do one thing and declare their retries."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.cache_policies import NO_CACHE

from flows.alerts import check_and_send, send_pending
from flows.extract.deletes import DeleteMode
from flows.extract.postgres import BatchResult, extract_table
from flows.load import record_failed_batch
from flows.maintenance import MaintenanceSummary
from flows.runs import RunRecord, recorded_run, refresh_alerts
from flows.settings import get_settings
from flows.summary import RunSummary, count_invalid_rows, count_layer_rows, count_warnings
from flows.tasks import pipeline_task
from flows.transform import PlanSummary, Transformation
from flows.warehouse import connect_source, connect_warehouse, require_source, source_url

if TYPE_CHECKING:  # the feed flow imports prefect-aws (boto3): only a run that loads feeds needs it
    from flows.extract.feeds import FeedRun


def source_is_empty() -> bool:
    with connect_source() as conn:
        exists = conn.execute("select to_regclass('public.sim_state') is not null").fetchone()[0]
        return not exists or conn.execute("select count(*) from sim_state").fetchone()[0] == 0


# Every task that does a step of the pipeline alerts when it failed for good (after its retries):
# flows/tasks.py. Prefect calls an `on_failure` hook once, on the final failure.
@pipeline_task("simulate {days} days")
def simulate_demo_source(days: int, scale: int | None = None) -> dict[str, int]:
    from flows.simulate.demo import advance

    return dict(advance(source_url(), days, scale=scale).rows())


@pipeline_task("extract {entity}")
def extract_source_table(entity: str, deletes: DeleteMode = "auto") -> BatchResult:
    """One source table into raw, as one batch. Retries: a dropped connection rolls back whole."""
    from prefect.runtime import flow_run

    settings = get_settings()
    try:
        with connect_source() as source, connect_warehouse() as warehouse:
            return extract_table(
                source,
                warehouse,
                entity,
                settings.record_source,
                detect_deletes=deletes,
                flow_run_id=flow_run.id,
            )
    except Exception as err:
        record_failed_batch(settings.record_source, entity, err, flow_run.id)
        raise


# The SQLMesh steps share one Transformation (its lock, Context and execution time): no cache.
@pipeline_task(
    "sqlmesh plan {environment}", retries=1, retry_delay_seconds=5, cache_policy=NO_CACHE
)
def sqlmesh_plan(transformation: Transformation, environment: str) -> list[str]:
    return transformation.plan(environment)


@pipeline_task("sqlmesh run {environment}", cache_policy=NO_CACHE)
def sqlmesh_run(transformation: Transformation, environment: str) -> bool:
    return transformation.run(environment)


@pipeline_task("promote {source}", retries=0, cache_policy=NO_CACHE)
def sqlmesh_promote(transformation: Transformation, source: str) -> PlanSummary:
    # Not retried: a refusal (files not what staging was planned with) needs a person.
    return transformation.promote(source)


def open_transformation(purpose: str) -> Transformation:
    """The warehouse's SQLMesh lock and the publication of new batches, as one step."""
    return Transformation(purpose, on_wait=get_run_logger().warning).open()


def summarise_layers(summary: RunSummary, since: datetime | None, until: datetime) -> None:
    """Rows per layer, and the versions published in (since, until] that silver held back or
    loaded with a warning."""
    with connect_warehouse() as conn:
        summary.layer_rows, summary.estimated_rows = count_layer_rows(conn)
        summary.invalid_rows, summary.invalid_by_rule = count_invalid_rows(conn, since, until)
        summary.warnings_by_rule = count_warnings(conn, since, until)


# Called with (step, None) when a step of the run starts and (step, seconds) when it ends: the CLI
# shows progress with it; a deployment needs none (Prefect's UI shows the task runs).
step_listeners: list[Callable[[str, float | None], None]] = []


def _timed(
    summary: RunSummary, step: str, call: Callable[[], object], detail: Callable[[object], str]
) -> object:
    for listener in step_listeners:
        listener(step, None)
    started = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - started
    summary.steps.append((step, seconds, detail(result)))
    for listener in step_listeners:
        listener(step, seconds)
    return result


def describe_batches(batches: list[BatchResult]) -> str:
    loaded = sum(b.rows_loaded for b in batches)
    quarantined = sum(b.rows_quarantined for b in batches)
    deleted = sum(b.rows_deleted for b in batches)
    return f"{loaded} rows, {quarantined} quarantined, {deleted} deletes"


def build_data_docs() -> str | None:
    """Rebuild GX Data Docs from every validation so far; returns the index page's path."""
    from flows.quality.validate import get_validator

    return get_validator(get_settings().data_dir / "gx").build_docs()


@flow(name="bankdw-extract-tables")
def extract_flow(deletes: DeleteMode = "auto") -> list[BatchResult]:
    """Every source table into raw, incrementally. `deletes`: how to look for rows the source
    deleted (`auto`: recent keys every run, all keys when a full sweep is due; see deletes.py)."""
    return extract_source_tables(deletes)


def extract_source_tables(deletes: DeleteMode = "auto") -> list[BatchResult]:
    """The tables side by side, one task each, inside whichever flow calls it (a subflow costs
    a second of Prefect's bookkeeping)."""
    require_source()
    entities = get_settings().source_tables
    futures = [extract_source_table.submit(entity, deletes) for entity in entities]
    return [f.result() for f in futures]


@dataclass
class Extraction:
    """The batches of an extraction, and what the feed run reports besides them."""

    batches: list[BatchResult]
    feeds: FeedRun


def extract_everything(deletes: DeleteMode = "auto") -> Extraction:
    """The core bank's tables, then the CRM/ops feed files (landing folder, or S3 if set),
    inside whichever flow calls it."""
    from flows.extract.feeds import NO_LANDING, FeedRun, load_new_feed_files

    settings = get_settings()
    batches = extract_source_tables(deletes)
    if settings.s3_bucket:
        feeds = load_new_feed_files("s3")
    elif settings.landing_path is not None:
        feeds = load_new_feed_files("landing")
    else:  # a server warehouse gets no demo landing folder
        feeds = FeedRun(off=NO_LANDING)
    return Extraction(batches + feeds.batches, feeds)


def _flow_run_id() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.id


def _alert_on_flow_failure(flow, flow_run, state) -> None:  # type: ignore[no-untyped-def]
    """A flow that failed: its tasks' alerts (and any recorded before the failure) are sent;
    not when a person stopped bankdw (the process exits at once)."""
    from flows import runtime

    if not runtime.stopping():
        send_pending()
        # The run's row (ops.pipeline_runs) was finished before these were sent.
        refresh_alerts(str(flow_run.id))


@flow(name="bankdw-extract", on_failure=[_alert_on_flow_failure])
def extract_all_flow(deletes: DeleteMode = "auto") -> Extraction:
    """Every source table and every new feed file into raw (`bankdw extract`), then the data
    quality and freshness checks (flows/alerts.py). Recorded in ops.pipeline_runs."""
    with recorded_run("bankdw-extract"):
        extraction = extract_everything(deletes)
        check_and_send(_flow_run_id())
    return extraction


def report_extraction(summary: RunSummary, extraction: Extraction) -> None:
    """The batches, and each kind of event on lines of its own: a re-sent file is not drift."""
    summary.batches = extraction.batches
    summary.drift = [b.drift for b in extraction.batches if b.drift]
    summary.resent = extraction.feeds.resent
    summary.repeated = [r.describe() for r in extraction.feeds.repeated]
    summary.ignored = [i.describe() for i in extraction.feeds.ignored]
    summary.feeds_off = extraction.feeds.off


@flow(name="bankdw-transform", on_failure=[_alert_on_flow_failure])
def transform_flow(environment: str = "prod") -> PlanSummary:
    """SQLMesh plan/apply and run for `environment` (each model's audits run as it is built),
    under the SQLMesh lock. Another environment than prod (`staging`, `dev`) gets the changed
    models built in tables of its own and views on prod's tables for the rest; prod is untouched.
    Returns what the plan changed. Recorded in ops.pipeline_runs."""
    with recorded_run("bankdw-transform") as record:
        transformation = Transformation(
            f"bankdw transform {environment}", on_wait=get_run_logger().warning
        )
        record.layer_rows = transformation.log.rows_written  # filled as SQLMesh writes
        with transformation:
            sqlmesh_plan(transformation, environment)
            sqlmesh_run(transformation, environment)
    return transformation.last_plan or PlanSummary(environment)


@flow(name="bankdw-promote", on_failure=[_alert_on_flow_failure])
def promote_flow(source: str = "staging") -> PlanSummary:
    """Make prod what `source` (staging) is, as a virtual update: prod's views are pointed at the
    tables `source` built; no table is built and nothing recomputed (Transformation.promote)."""
    with Transformation(
        f"bankdw promote {source}", on_wait=get_run_logger().warning
    ) as transformation:
        return sqlmesh_promote(transformation, source)


@flow(name="bankdw-run", on_failure=[_alert_on_flow_failure])
def run_flow(
    days: int | None = None, scale: int | None = None, deletes: DeleteMode = "auto"
) -> RunSummary:
    """The main job: (demo source only) simulate, then extract, transform, audit, summarise.
    Recorded in ops.pipeline_runs (started as 'running', finished as completed or failed, with
    its figures) and as a table artifact of the flow run."""
    with recorded_run("bankdw-run") as record:
        return _run(record, days, scale, deletes)


def _run(record: RunRecord, days: int | None, scale: int | None, deletes: DeleteMode) -> RunSummary:
    logger = get_run_logger()
    settings = get_settings()
    require_source(settings)
    summary = RunSummary()

    if settings.uses_demo_source and (days or source_is_empty()):
        n_days = days or settings.sim_initial_days
        logger.info("Simulating %s days of the demo core bank", n_days)
        _timed(
            summary,
            "simulate",
            lambda: simulate_demo_source(n_days, scale),
            lambda r: f"{n_days} day{'s' if n_days != 1 else ''}",
        )
    elif days:
        logger.warning("--days ignored: bankdw simulates only the demo bank, never SOURCE_URL's")

    extraction = _timed(
        summary,
        "extract",
        lambda: extract_everything(deletes),
        lambda e: describe_batches(e.batches),
    )
    report_extraction(summary, extraction)
    for note in summary.drift:
        logger.warning("schema drift: %s", note)
    check_and_send(_flow_run_id())

    transformation = _timed(
        summary,
        "publish",
        lambda: open_transformation("bankdw run"),
        lambda t: f"{t.publication.batches} batches, up to {t.execution_time:%Y-%m-%d %H:%M:%S}",
    )
    record.layer_rows = transformation.log.rows_written  # filled as SQLMesh writes
    with transformation:
        _timed(
            summary,
            "sqlmesh plan",
            lambda: sqlmesh_plan(transformation, "prod"),
            lambda r: f"{len(r)} new model versions",
        )
        _timed(
            summary,
            "sqlmesh run",
            lambda: sqlmesh_run(transformation, "prod"),
            lambda ran: "models built and audited" if ran else "nothing new: SQLMesh not loaded",
        )
    publication = transformation.publication
    summarise_layers(summary, publication.previous, publication.execution_time)
    return summary


# Maintenance steps: each is idempotent, so a retry after a dropped connection is safe.
@pipeline_task("sqlmesh janitor")
def sqlmesh_janitor() -> str:
    from flows.maintenance import run_janitor

    return run_janitor(on_wait=get_run_logger().warning)


@pipeline_task("vacuum and analyze raw")
def vacuum_raw() -> list[str]:
    from flows.maintenance import vacuum_analyze_raw

    return vacuum_analyze_raw()


@pipeline_task("remove rows older than {days} days")
def remove_old_rows(days: int) -> dict[str, int]:
    # Idempotent: a retry removes what the failed attempt had not reached yet.
    from flows.retention import RAW_KEPT
    from flows.retention import remove_old_rows as remove

    summary = remove(days)
    get_run_logger().info(RAW_KEPT)
    return summary.removed


@pipeline_task("vacuum and analyze cleaned tables")
def vacuum_cleaned(tables: list[str]) -> list[str]:
    from flows.retention import vacuum_tables

    return vacuum_tables(tables)


@flow(name="bankdw-maintenance", on_failure=[_alert_on_flow_failure])
def maintenance_flow(
    janitor: bool = True,
    vacuum: bool = True,
    cleanup: bool = True,
    retention_days: int | None = None,
) -> MaintenanceSummary:
    """Weekly maintenance (flows/maintenance.py, flows/retention.py): resolved quarantine rows
    and ops logs older than `retention_days` (RETENTION_DAYS when unset) removed (`cleanup`),
    SQLMesh's janitor under the SQLMesh lock (`janitor`), then VACUUM (ANALYZE) of every raw
    table and of the tables the cleanup removed rows from (`vacuum`)."""
    logger = get_run_logger()
    summary = MaintenanceSummary()
    if cleanup:
        days = get_settings().retention_days if retention_days is None else retention_days
        summary.removed = remove_old_rows(days)
        logger.info(
            "removed %s rows older than %s days: %s",
            sum(summary.removed.values()),
            days,
            {name: count for name, count in summary.removed.items() if count},
        )
    if janitor:
        summary.janitor = sqlmesh_janitor()
        logger.info("sqlmesh janitor: %s", summary.janitor)
    if vacuum:
        summary.vacuumed = vacuum_raw()
        logger.info("vacuumed and analysed %s raw tables", len(summary.vacuumed))
        cleaned = [name for name, count in summary.removed.items() if count]
        if cleaned:
            summary.vacuumed += vacuum_cleaned(cleaned)
            logger.info("vacuumed and analysed the %s tables cleaned", len(cleaned))
    return summary
