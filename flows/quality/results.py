"""Contract outcomes: per-rule counts in ops.dq_results, rejected batches, alerts in ops.alerts."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass
class RuleStat:
    rule: str
    column: str
    evaluated: int = 0
    failed: int = 0

    def add(self, evaluated: int, failed: int) -> None:
        self.evaluated += evaluated
        self.failed += failed

    @property
    def percent(self) -> float:
        return 100.0 * self.failed / self.evaluated if self.evaluated else 0.0


class BatchRejectedError(RuntimeError):
    """More of a batch broke its contract than the threshold allows: nothing of it loads."""

    def __init__(
        self,
        entity: str,
        rows_in: int,
        rejected: int,
        threshold: float,
        stats: dict[str, RuleStat],
    ) -> None:
        self.entity, self.rows_in, self.rejected, self.threshold = (
            entity,
            rows_in,
            rejected,
            threshold,
        )
        self.stats = stats
        worst = sorted(stats.values(), key=lambda s: s.failed, reverse=True)[:3]
        rules = ", ".join(f"{s.rule} {s.failed}" for s in worst if s.failed)
        super().__init__(
            f"{entity}: {rejected} of {rows_in} rows ({100 * rejected / rows_in:.1f}%) broke the "
            f"contract, above the {100 * threshold:.1f}% threshold ({rules}); the batch was not "
            "loaded. Fix the source (or the contract) and run again; `bankdw quarantine list` "
            "shows earlier rejections"
        )


def refuse_if_too_many_rejected(
    entity: str, rows_in: int, rejected: int, stats: dict[str, RuleStat]
) -> None:
    """Refuse a batch whose rejected share passes the threshold, if it is big enough to judge."""
    from flows.settings import get_settings

    settings = get_settings()
    threshold = settings.reject_threshold
    if rows_in >= settings.reject_min_rows and rejected / rows_in > threshold:
        raise BatchRejectedError(entity, rows_in, rejected, threshold, stats)


def record_dq_results(
    conn: psycopg.Connection, batch_id: int, entity: str, stats: dict[str, RuleStat]
) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """
            insert into ops.dq_results
                (batch_id, entity, rule, column_name, evaluated, failed, percent)
            values (%s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (batch_id, entity, s.rule, s.column, s.evaluated, s.failed, round(s.percent, 3))
                for s in stats.values()
            ],
        )


def raise_alert(
    conn: psycopg.Connection,
    severity: str,
    source: str,
    entity: str,
    batch_id: int | None,
    message: str,
    kind: str | None = None,
    flow_run_id: str | None = None,
) -> None:
    """Record what needs a person's attention in ops.alerts; flows/alerts.py sends it (at the end
    of the flow, or from the failing task's hook) through the configured channels."""
    from flows.alerts import _runtime, next_step

    flow_run_id = flow_run_id or _runtime()["flow_run_id"]  # type: ignore[assignment]
    # With its flow run, so that the run's row in ops.pipeline_runs counts it.
    conn.execute(
        "insert into ops.alerts "
        "(severity, source, entity, batch_id, message, kind, next_step, flow_run_id) "
        "values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            severity,
            source,
            entity,
            batch_id,
            message,
            kind,
            next_step(kind, entity) if kind else None,
            flow_run_id,
        ),
    )
