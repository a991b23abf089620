"""Prefect deployments: prefect.yaml is the one place they are declared.

`prefect deploy --all` reads prefect.yaml itself (for a Prefect server and its workers);
`bankdw serve` reads the same file here and serves the same deployments from one process (a
laptop: no server, no work pool, no worker). Nothing about a schedule, a parameter or a
concurrency limit is repeated in Python.

`serve` understands the part of prefect.yaml's schema these deployments use (name, description,
entrypoint, parameters, schedules with cron or interval and a timezone, concurrency_limit, tags)
and refuses anything else, so that the two readings cannot drift apart silently.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from flows.settings import get_settings

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.flows import Flow

PREFECT_YAML = "prefect.yaml"

# The keys of a deployment and of a schedule that `serve` reads; work_pool is for workers only
# (a served deployment runs in the serving process's runner).
DEPLOYMENT_KEYS = {
    "name",
    "description",
    "entrypoint",
    "parameters",
    "schedules",
    "concurrency_limit",
    "tags",
    "work_pool",
}
SCHEDULE_KEYS = {"cron", "interval", "timezone"}


def project_values() -> dict[str, str]:
    """A deploy-time step of prefect.yaml (`build`): values its other steps template, from
    bankdw's settings. `project_root` is the checkout a process worker changes into before a
    run (where config.yaml, models/ and .env are)."""
    return {"project_root": str(get_settings().project_root)}


@dataclass(frozen=True)
class Schedule:
    """One schedule of a deployment, as prefect.yaml declares it."""

    cron: str | None = None
    interval: timedelta | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class Declaration:
    """One deployment of prefect.yaml."""

    name: str
    entrypoint: str  # path/to/file.py:flow_function, relative to the repository root
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[Schedule, ...] = ()
    concurrency_limit: int | None = None
    collision_strategy: str | None = None  # ENQUEUE or CANCEL_NEW
    tags: tuple[str, ...] = ()


def prefect_yaml_path() -> Path:
    return get_settings().project_root / PREFECT_YAML


def read_declarations(path: Path | None = None) -> list[Declaration]:
    """The deployments prefect.yaml declares; ValueError naming the deployment and key for
    anything `serve` would not read the way `prefect deploy` does."""
    path = path or prefect_yaml_path()
    document = yaml.safe_load(path.read_text()) or {}
    declarations = []
    for entry in document.get("deployments") or []:
        name = entry.get("name")
        where = f"{path.name}: deployment {name!r}"
        unknown = set(entry) - DEPLOYMENT_KEYS
        if unknown:
            raise ValueError(f"{where}: bankdw serve does not read {sorted(unknown)}")
        if "{{" in yaml.safe_dump({k: v for k, v in entry.items() if k != "work_pool"}):
            raise ValueError(f"{where}: a templated value ({{{{ ... }}}}) is for workers only")
        limit = entry.get("concurrency_limit")
        if isinstance(limit, dict):
            count, strategy = limit.get("limit"), limit.get("collision_strategy")
        else:
            count, strategy = limit, None
        declarations.append(
            Declaration(
                name=name,
                entrypoint=entry["entrypoint"],
                description=entry.get("description"),
                parameters=dict(entry.get("parameters") or {}),
                schedules=tuple(_schedule(where, s) for s in entry.get("schedules") or []),
                concurrency_limit=count,
                collision_strategy=strategy,
                tags=tuple(entry.get("tags") or ()),
            )
        )
    return declarations


def _schedule(where: str, entry: dict[str, Any]) -> Schedule:
    unknown = set(entry) - SCHEDULE_KEYS
    if unknown:
        raise ValueError(f"{where}: bankdw serve does not read schedule keys {sorted(unknown)}")
    if ("cron" in entry) == ("interval" in entry):
        raise ValueError(f"{where}: a schedule needs exactly one of cron and interval")
    interval = entry.get("interval")
    if interval is not None and not isinstance(interval, int | float):
        raise ValueError(f"{where}: write an interval in seconds (a number), not {interval!r}")
    return Schedule(
        cron=entry.get("cron"),
        interval=None if interval is None else timedelta(seconds=interval),
        timezone=entry.get("timezone"),
    )


def load_flow(entrypoint: str) -> Flow[Any, Any]:
    """The flow an entrypoint names (`flows/pipeline.py:run_flow`), imported as the module it is
    (flows.pipeline), so that a served flow and the rest of bankdw share one copy of it."""
    from prefect.flows import Flow

    file, _, attribute = entrypoint.partition(":")
    module_path = Path(file).with_suffix("")
    if module_path.is_absolute() or module_path.parts[0] != "flows":
        raise ValueError(f"entrypoint {entrypoint!r}: not a flow of the bankdw package")
    found = getattr(importlib.import_module(".".join(module_path.parts)), attribute, None)
    if not isinstance(found, Flow):
        raise ValueError(f"entrypoint {entrypoint!r}: not a Prefect flow")
    return found


def to_runner_deployment(declaration: Declaration) -> RunnerDeployment:
    """A declaration as the deployment `serve` runs (prefect's Flow.to_deployment)."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron, Interval

    schedules = []
    for s in declaration.schedules:
        if s.cron is not None:
            schedules.append(Cron(s.cron, timezone=s.timezone))
        else:
            assert s.interval is not None  # read_declarations: exactly one of the two
            schedules.append(Interval(s.interval, timezone=s.timezone))
    limit: int | ConcurrencyLimitConfig | None = declaration.concurrency_limit
    if declaration.concurrency_limit is not None and declaration.collision_strategy:
        limit = ConcurrencyLimitConfig(
            limit=declaration.concurrency_limit,
            collision_strategy=ConcurrencyLimitStrategy(declaration.collision_strategy),
        )
    return load_flow(declaration.entrypoint).to_deployment(
        name=declaration.name,
        description=declaration.description,
        parameters=declaration.parameters,
        schedules=schedules,
        concurrency_limit=limit,
        tags=list(declaration.tags),
    )


def served_deployments(path: Path | None = None) -> list[RunnerDeployment]:
    """Every deployment of prefect.yaml, ready for `serve`."""
    return [to_runner_deployment(d) for d in read_declarations(path)]


def serve_all(path: Path | None = None, limit: int | None = None) -> None:
    """Serve every deployment of prefect.yaml from this process until it is stopped (Ctrl-C,
    SIGTERM). Schedules are paused when it stops, so that no run is left due with nobody to
    run it; the next `serve` resumes them."""
    import warnings

    from prefect import serve

    # Prefect's runner answers SIGTERM by calling its async stop without awaiting it (3.8.8); the
    # schedules are paused all the same, on the way out of the runner. Not the user's concern.
    warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
    serve(*served_deployments(path), limit=limit, pause_on_shutdown=True)
