"""How tasks that touch a database or the network retry: one policy for every flow."""

from __future__ import annotations

from prefect.tasks import exponential_backoff

from flows.settings import get_settings

_settings = get_settings()
RETRIES = _settings.task_retries
BACKOFF = exponential_backoff(backoff_factor=_settings.task_retry_delay_seconds)


def retry_unless_refused(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Retry what may pass next time (a dropped connection, a server restarting), not a contract
    or drift refusal, an audit that found bad data, a lock that stayed taken for the whole
    timeout, nor what cannot heal by itself (failures.py: a wrong password, a missing database
    or table, a server too old for bankdw), nor anything once bankdw is stopping (its queries
    were cancelled on purpose)."""
    from flows import runtime
    from flows.failures import is_permanent
    from flows.quality.drift import SchemaDriftError
    from flows.quality.results import BatchRejectedError
    from flows.sqlmesh_lock import LockTimeoutError
    from flows.transform import TransformError

    if runtime.stopping():
        return False
    try:
        state.result()
    except (BatchRejectedError, SchemaDriftError, LockTimeoutError):
        return False
    except Exception as err:
        if is_permanent(err):
            return False
        if isinstance(err, TransformError):
            return err.retryable
        return True
    return True
