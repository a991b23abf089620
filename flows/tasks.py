"""The one way a pipeline step becomes a Prefect task: retried under the shared policy
(flows/retries.py) and alerting when it fails for good (flows/alerts.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task

from flows.alerts import on_task_failure
from flows.retries import BACKOFF, RETRIES, retry_unless_refused


def pipeline_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """A task named `name` (a template over its parameters, like "extract {entity}") with the
    shared retries and failure alert; `options` override or add Prefect task options."""
    settings: dict[str, Any] = {
        "retries": RETRIES,
        "retry_delay_seconds": BACKOFF,
        "retry_condition_fn": retry_unless_refused,
        "on_failure": [on_task_failure],
        "task_run_name": name,
    }
    return task(**(settings | options))
