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
        "attempts": task.task_run.run_count if task else None,
    }


def record(conn: psycopg.Connection, alert: Alert) -> int:
    """Insert the alert into ops.alerts (with the flow run and task raising it); its id."""
    if alert.severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, not {alert.severity!r}")
    where = _runtime()
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
            alert.attempts or where["attempts"],
        ),
    ).fetchone()[0]


PENDING = """
    select alert_id, severity, coalesce(kind, 'alert'), entity, message, next_step,
           to_char(raised_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"'), flow_run_id,
           flow_run_name, task, attempts, error, batch_id, channels, notify_attempts,
           (select max(earlier.alert_id) from ops.alerts as earlier
            where earlier.kind is not distinct from a.kind and earlier.entity = a.entity
              and earlier.alert_id < a.alert_id and cardinality(earlier.channels) > 0
              and earlier.notified_at > a.raised_at - make_interval(mins => %s))
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


def raise_and_send(alert: Alert, settings: Settings | None = None) -> None:
    """Record an alert and send it now (with whatever else is pending). If the warehouse cannot
    take it (it is what failed), the alert is sent straight to the channels, unrecorded."""
    from flows.warehouse import connect_warehouse

    settings = settings or get_settings()
    try:
        with connect_warehouse(settings) as conn:
            record(conn, alert)
            conn.commit()
    except Exception as err:
        log.warning("alert not recorded in ops.alerts (%s); sending it directly", err)
        _send_unrecorded(alert, settings)
        return
    send_pending(settings)


def _send_unrecorded(alert: Alert, settings: Settings) -> None:
    from datetime import UTC, datetime

    from flows.notify import Notification, channels, redact
    from flows.warehouse import describe_warehouse

    where = _runtime()
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
