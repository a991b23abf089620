"""Alerts: what needs a person, recorded in ops.alerts and sent to the configured channels.

Every alert is first a row of ops.alerts, with its severity (`critical`: data stopped flowing,
act now; `warning`: act today), its kind, what to do next, and the flow run and task that
raised it. `send_pending()` then sends every row not yet sent through the channels of
flows/notify.py and marks it: whoever raised an alert, it is sent once. Two processes that
dispatch at once never send a row twice (the rows are locked, `skip locked`). The same kind of
alert on the same subject within ALERT_REPEAT_MINUTES is recorded but not sent again: a source
that stays broken does not page someone every five minutes.

A task that still fails after its retries raises one alert from its `on_failure` hook, which
Prefect calls once, on the final failure (a retry is not a failure): attempts = retries + 1.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg

from flows.settings import Settings, get_settings

log = logging.getLogger(__name__)

SEVERITIES = ("critical", "warning")
# A channel that keeps failing is tried at this many dispatches, then given up (and logged).
SEND_ATTEMPTS = 3


@dataclass(frozen=True)
class Alert:
    severity: str  # critical | warning
    kind: str  # step_failed, batch_refused, schema_drift, audit_failed, dq_threshold, freshness...
    entity: str  # what it is about: a table, a feed, a source, a task
    message: str  # what happened
    next_step: str | None = None  # what a person does about it
    source: str = "bankdw"  # the record source, or bankdw itself
    batch_id: int | None = None
    error: str | None = None
    attempts: int | None = None


def _runtime() -> dict[str, object]:
    """The flow run and task run the alert is raised in (none outside Prefect)."""
    from prefect.context import FlowRunContext, TaskRunContext

    flow = FlowRunContext.get()
    task = TaskRunContext.get()
    return {
        "flow_run_id": str(flow.flow_run.id) if flow and flow.flow_run else None,
        "flow_run_name": flow.flow_run.name if flow and flow.flow_run else None,
        "task_run_id": str(task.task_run.id) if task else None,
        "task": task.task_run.name if task else None,
    }


def record(
    conn: psycopg.Connection,
    alert: Alert,
    flow_run_id: str | None = None,
    task: str | None = None,
) -> int:
    """Insert the alert into ops.alerts (with the flow run and task raising it); its id."""
    if alert.severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {alert.severity!r}")
    where = _runtime()
    where["flow_run_id"] = where["flow_run_id"] or flow_run_id
    where["task"] = where["task"] or task
    return conn.execute(
        """
        insert into ops.alerts (severity, kind, source, entity, batch_id, message, next_step,
                                error, flow_run_id, flow_run_name, task_run_id, task, attempts)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        returning alert_id
        """,
        (
            alert.severity,
            alert.kind,
            alert.source,
            alert.entity,
            alert.batch_id,
            alert.message,
            alert.next_step,
            alert.error,
            where["flow_run_id"],
            where["flow_run_name"],
            where["task_run_id"],
            where["task"],
            alert.attempts,
        ),
    ).fetchone()[0]


PENDING = """
    select alert_id, severity, coalesce(kind, 'alert'), entity, message, next_step,
           to_char(raised_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), flow_run_id,
           flow_run_name, task, attempts, error, batch_id, channels, notify_attempts,
           (select max(earlier.alert_id) from ops.alerts as earlier
            where earlier.kind is not distinct from a.kind and earlier.entity = a.entity
              and earlier.alert_id < a.alert_id and cardinality(earlier.channels) > 0
              and earlier.notified_at > a.raised_at - %s * interval '1 minute')
    from ops.alerts as a
    where notified_at is null
    order by alert_id
    for update skip locked
"""


def send_pending(settings: Settings | None = None) -> int:
    """Send every alert not sent yet; returns how many reached at least one channel.

    Never raises: a notification that cannot be sent is retried by the next dispatch (up to
    SEND_ATTEMPTS), and a failing channel never fails the pipeline.
    """
    from flows.warehouse import connect_warehouse

    settings = settings or get_settings()
    try:
        with connect_warehouse(settings) as conn:
            return _send_pending(conn, settings)
    except Exception as err:
        log.warning("alerts could not be sent: %s", err)
        return 0


def _send_pending(conn: psycopg.Connection, settings: Settings) -> int:
    from flows.notify import Notification, channels, redact
    from flows.warehouse import describe_warehouse

    configured = channels(settings)
    warehouse = describe_warehouse(settings)
    sent = 0
    with conn.transaction():
        for row in conn.execute(PENDING, (settings.alert_repeat_minutes,)).fetchall():
            (alert_id, *fields, done, tries, repeat_of) = row
            note = Notification(alert_id, *fields[:6], warehouse, *fields[6:])
            if repeat_of is not None or not configured:
                why = f"repeat of alert #{repeat_of}: not sent again" if repeat_of else None
                conn.execute(
                    "update ops.alerts set notified_at = clock_timestamp(), notify_error = %s "
                    "where alert_id = %s",
                    (why, alert_id),
                )
                continue
            errors = []
            for name, send in configured.items():
                if name in done:
                    continue
                try:
                    send(note)
                    done.append(name)
                except Exception as err:  # any channel's failure: keep it, try the others
                    errors.append(f"{name}: {redact(err, settings)}")
            finished = not errors or tries + 1 >= SEND_ATTEMPTS
            if errors:
                log.warning("alert #%s not sent: %s", alert_id, "; ".join(errors))
            conn.execute(
                """
                update ops.alerts
                set channels = %s, notify_attempts = notify_attempts + 1, notify_error = %s,
                    notified_at = case when %s then clock_timestamp() end
                where alert_id = %s
                """,
                (done, "; ".join(errors) or None, finished, alert_id),
            )
            sent += bool(done)
    return sent


def raise_and_send(
    alert: Alert,
    settings: Settings | None = None,
    flow_run_id: str | None = None,
    task: str | None = None,
) -> None:
    """Record an alert and send it now (with whatever else is pending). If the warehouse cannot
    take it (it is what failed), the alert is sent straight to the channels, unrecorded.
    `flow_run_id` and `task` name where it was raised when no Prefect run context says so."""
    from flows.warehouse import connect_warehouse

    settings = settings or get_settings()
    try:
        with connect_warehouse(settings) as conn:
            record(conn, alert, flow_run_id, task)
            conn.commit()
    except Exception as err:
        log.warning("alert not recorded in ops.alerts (%s); sending it directly", err)
        _send_unrecorded(alert, settings, flow_run_id, task)
        return
    send_pending(settings)


def _send_unrecorded(
    alert: Alert, settings: Settings, flow_run_id: str | None, task: str | None
) -> None:
    from datetime import UTC, datetime

    from flows.notify import Notification, channels, redact
    from flows.warehouse import describe_warehouse

    where = _runtime()
    where["flow_run_id"] = where["flow_run_id"] or flow_run_id
    where["task"] = where["task"] or task
    note = Notification(
        0,
        alert.severity,
        alert.kind,
        alert.entity,
        alert.message,
        alert.next_step,
        datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        describe_warehouse(settings),
        where["flow_run_id"],  # type: ignore[arg-type]
        where["flow_run_name"],  # type: ignore[arg-type]
        where["task"],  # type: ignore[arg-type]
        alert.attempts,
        alert.error,
        alert.batch_id,
    )
    for name, send in channels(settings).items():
        try:
            send(note)
        except Exception as err:
            log.warning("alert not sent to %s: %s", name, redact(err, settings))


# What a person does next, by kind of alert.
NEXT_STEP = {
    "step_failed": (
        "read the flow run's log (Prefect UI, or logs/bankdw.log), fix the cause, then run again: "
        "`bankdw run` resumes where it stopped"
    ),
    "audit_failed": (
        "the model was not published; look at the rows the audit names (`bankdw sql`), fix the "
        "source data or the model, then `bankdw run`"
    ),
    "batch_refused": (
        "nothing of the batch was loaded; `bankdw quarantine list --entity {entity}` shows why; "
        "fix the source and the next run loads it, or replay it (`bankdw quarantine replay`)"
    ),
    "schema_drift": (
        "the source's columns changed in a way the contract refuses; update the contract "
        "(flows/quality) or ask the source's owner to revert, then run again"
    ),
    "dq_threshold": (
        "`bankdw quarantine list --entity {entity}` shows the rules broken; ask the source's "
        "owner to fix the records"
    ),
    "freshness": (
        "check that {entity} is still delivering (the source database or the landing folder); "
        "the limit is FRESHNESS_LIMIT_HOURS"
    ),
}


def next_step(kind: str, entity: str) -> str | None:
    text = NEXT_STEP.get(kind)
    return text.format(entity=entity) if text else None


def on_task_failure(task, task_run, state) -> None:  # type: ignore[no-untyped-def]
    """Prefect `on_failure` hook of the pipeline's tasks: one alert when a task failed for good.

    Prefect calls it once, after the last attempt (a retry is not a failure), so attempts is the
    task run's run count: retries + 1 for what kept failing. A refused batch or schema drift
    already raised its own alert (load.record_failed_batch); it is only sent here. An audit that
    found bad data is an `audit_failed` alert rather than a failed step.
    """
    from flows import runtime
    from flows.quality.drift import SchemaDriftError
    from flows.quality.results import BatchRejectedError
    from flows.transform import TransformError

    if runtime.stopping():  # a person stopped bankdw: nothing to tell them, and exit at once
        return
    error: BaseException | None = None
    try:
        state.result()
    except BaseException as err:  # the task's own exception
        error = err
    if isinstance(error, BatchRejectedError | SchemaDriftError):
        send_pending()
        return
    kind = "step_failed"
    if isinstance(error, TransformError) and error.audit_failed:
        kind = "audit_failed"
    text = f"{type(error).__name__}: {error}" if error is not None else str(state.message)
    # The task run's name says which step (`extract customers`, `sqlmesh run prod`): the same
    # step failing again is a repeat (ALERT_REPEAT_MINUTES), another step a new alert.
    step = task_run.name
    attempts = task_run.run_count
    raise_and_send(
        Alert(
            severity="critical",
            kind=kind,
            entity=step,
            message=f"{step} failed after {attempts} attempt{'s' if attempts != 1 else ''}: "
            f"{text[:1000]}",
            next_step=next_step(kind, step),
            error=text[:2000],
            attempts=attempts,
        ),
        flow_run_id=str(task_run.flow_run_id) if task_run.flow_run_id else None,
        task=task_run.name,
    )


def check_sources(conn: psycopg.Connection, flow_run_id: str | None, settings: Settings) -> int:
    """Data-quality score per entity of this flow run's batches, and every watched source's
    freshness; records a warning for each breach (sent by send_pending). Returns how many.

    DQ score of an entity: the share of the rows this run read that passed its contract
    (loaded into raw, not quarantined), in percent, against DQ_SCORE_MIN. Freshness: the time
    since the source last delivered a batch with rows, against its FRESHNESS_LIMIT_HOURS entry
    (a record source such as `corebank`, any of its tables, or a feed's name). A source that never
    delivered is not judged: there is nothing yet to be late against.
    """
    raised = 0
    if flow_run_id is not None:
        scores = conn.execute(
            """
            select source, entity, sum(rows_loaded), sum(rows_quarantined)
            from ops.batches
            where flow_run_id = %s and status = 'committed'
            group by source, entity
            having sum(rows_loaded + rows_quarantined) > 0
            order by entity
            """,
            (flow_run_id,),
        ).fetchall()
        for source, entity, loaded, quarantined in scores:
            score = 100.0 * float(loaded) / float(loaded + quarantined)
            if score < settings.dq_score_min:
                record(
                    conn,
                    Alert(
                        "warning",
                        "dq_threshold",
                        entity,
                        f"{entity}: {score:.2f}% of this run's {loaded + quarantined:,} rows "
                        f"passed the contract, below DQ_SCORE_MIN {settings.dq_score_min}% "
                        f"({quarantined:,} quarantined)",
                        next_step=next_step("dq_threshold", entity),
                        source=source,
                    ),
                )
                raised += 1
    for fresh in source_freshness(conn, settings):
        if fresh.stale:
            record(
                conn,
                Alert(
                    "warning",
                    "freshness",
                    fresh.source,
                    f"{fresh.source} has delivered nothing for {fresh.hours_silent:.1f} h (last at "
                    f"{fresh.last_delivery:%Y-%m-%d %H:%M} UTC), longer than its limit of "
                    f"{fresh.limit_hours:g} h",
                    next_step=next_step("freshness", fresh.source),
                    source=fresh.source,
                ),
            )
            raised += 1
    return raised


@dataclass(frozen=True)
class Freshness:
    """How long a watched source (FRESHNESS_LIMIT_HOURS) has delivered nothing."""

    source: str  # a record source (any of its tables) or a feed's name
    limit_hours: float
    hours_silent: float | None  # None: it never delivered, so it cannot be late yet
    last_delivery: datetime | None  # UTC

    @property
    def stale(self) -> bool:
        return self.hours_silent is not None and self.hours_silent > self.limit_hours


def source_freshness(conn: psycopg.Connection, settings: Settings) -> list[Freshness]:
    """Every watched source's latest committed batch that brought rows, against its limit.

    Two backward index scans per source (by record source, by entity: sql/warehouse/ops.sql), so
    the cost does not grow with ops.batches.
    """
    found = []
    for watched, hours in sorted(settings.freshness_limit_hours.items()):
        silent, last = conn.execute(
            """
            with latest as (
                select greatest(
                    (select max(finished_at) from ops.batches
                     where status = 'committed' and rows_in > 0 and source = %(s)s),
                    (select max(finished_at) from ops.batches
                     where status = 'committed' and rows_in > 0 and entity = %(s)s)) as at
            )
            select extract(epoch from clock_timestamp() - at) / 3600, at at time zone 'UTC'
            from latest
            """,
            {"s": watched},
        ).fetchone()
        found.append(Freshness(watched, hours, None if silent is None else float(silent), last))
    return found


def check_and_send(flow_run_id: str | None, settings: Settings | None = None) -> None:
    """At the end of a flow: judge DQ and freshness, then send every alert still pending.
    Never fails the flow (the data is in; a failing check is logged)."""
    from flows.warehouse import connect_warehouse

    settings = settings or get_settings()
    try:
        with connect_warehouse(settings) as conn, conn.transaction():
            check_sources(conn, flow_run_id, settings)
    except Exception as err:
        log.warning("data-quality and freshness checks failed: %s", err)
    send_pending(settings)
