"""Benchmark: the same one-day increment on a warehouse with H days of history and on one with
10 x H, end to end and per step, and a run with nothing new.

`bankdw bench incremental [--days 30] [--factor 10] [--also-days N] [--increments 3]` builds, on a
dedicated embedded PostgreSQL (or the server WAREHOUSE_URL names), one source and one warehouse
per history size: the simulated bank (default scale) over H days, loaded and built by one
`run_flow()`. Then, three times: the bank advances one day and `run_flow()` takes it in, timed
per step (extract, publish and plan, silver, vault, gold, audits). Last, `bankdw run` with
nothing new, as its own process (Prefect's temporary API, imports and all), three times. It
prints each step's median on H and on 10 x H and their ratio: what a run costs should follow
what is new, not what is old, so every ratio should stay near 1.

Before the measured increments, one increment is run unmeasured and the warehouse vacuumed (see
measure_history: the first run after a history redoes the hour it was published in, and leaves
dead rows autovacuum would have cleared in a deployed warehouse).

The warehouse's clock moves a day forward before the increments, and before each one: a deployed
warehouse took its history in long ago and receives each day on a later one (and a day is what
the increment is). The clock only moves forward (see flows/publication.py); nothing else is
faked. Each history's bank starts far enough in the past that it ends before today.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from bench.extraction import benchmark_server, drop_database, recreate_database
from flows.warehouse import PgParams

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS = ("extract", "publish + plan", "silver", "vault", "gold", "audits", "whole run")
LAYERS = ("silver", "vault", "gold")


@dataclass
class Increment:
    """Seconds per step of one `run_flow()` that took in one simulated day, and per model."""

    seconds: dict[str, float] = field(default_factory=dict)
    rows_loaded: int = 0
    models: dict[str, float] = field(default_factory=dict)


@dataclass
class History:
    days: int
    raw_rows: int = 0
    build_seconds: float = 0.0
    increments: list[Increment] = field(default_factory=list)
    no_change_seconds: list[float] = field(default_factory=list)

    def median(self, step: str) -> float:
        if step == "no-change run":
            return statistics.median(self.no_change_seconds)
        return statistics.median(i.seconds.get(step, 0.0) for i in self.increments)


@contextmanager
def pointed_at(warehouse_url: str, source_url: str, folder: Path) -> Iterator[None]:
    """Point the settings (and any subprocess) at one warehouse and source."""
    from flows.settings import reset_settings

    keys = ("WAREHOUSE_URL", "SOURCE_URL", "WAREHOUSE_DIR", "LANDING_DIR")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(
        WAREHOUSE_URL=warehouse_url,
        SOURCE_URL=source_url,
        WAREHOUSE_DIR=str(folder),
        LANDING_DIR=str(folder / "landing"),
    )
    reset_settings()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_settings()


@contextmanager
def layer_timings() -> Iterator[dict[str, float]]:
    """Seconds SQLMesh spent per layer (evaluation without audits) and in audits, while open."""
    from sqlmesh.core.scheduler import Scheduler

    from flows import transform

    totals: dict[str, float] = defaultdict(float)

    def on_evaluated(model: str, seconds: float) -> None:
        layer = model.split(".")[-2].strip('"') if "." in model else ""
        totals[layer if layer in LAYERS else "other"] += seconds
        name = ".".join(part.strip('"') for part in model.split(".")[-2:])
        totals[f"model {name}"] += seconds

    original = Scheduler._audit_snapshot

    def timed_audit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            totals["audits"] += time.perf_counter() - started
            snapshot = kwargs.get("snapshot") or args[0]
            layer = snapshot.name.split(".")[-2].strip('"')
            # Evaluation durations include the model's audits: counted once, under audits.
            totals[f"{layer} audits"] += time.perf_counter() - started

    transform.evaluation_listeners.append(on_evaluated)
    Scheduler._audit_snapshot = timed_audit  # type: ignore[method-assign]
    try:
        yield totals
    finally:
        Scheduler._audit_snapshot = original  # type: ignore[method-assign]
        transform.evaluation_listeners.remove(on_evaluated)


def advance_clock(warehouse_url: str, days: int = 1) -> None:
    """The next publication lands `days` later (the clock only moves forward)."""
    with psycopg.connect(warehouse_url) as conn:
        conn.execute(
            "update ops.transform_clock set execution_time = execution_time + %s",
            (timedelta(days=days),),
        )


def settle(warehouse_url: str) -> None:
    """VACUUM (ANALYZE) the warehouse: what autovacuum does between runs of a deployed one."""
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("vacuum (analyze)")


def measure_increment(warehouse_url: str) -> Increment:
    from flows.pipeline import run_flow

    started = time.perf_counter()
    with layer_timings() as layers:
        summary = run_flow()
    whole = time.perf_counter() - started
    steps = {step: seconds for step, seconds, _ in summary.steps}
    seconds = {
        "extract": steps.get("extract", 0.0),
        "audits": layers["audits"],
        "whole run": whole,
    }
    for layer in LAYERS:
        seconds[layer] = layers[layer] - layers[f"{layer} audits"]
    # What SQLMesh's run spent beyond the models (state, scheduling), with publish and plan.
    evaluated = sum(seconds[layer] for layer in LAYERS) + layers["audits"]
    seconds["publish + plan"] = (
        steps.get("publish", 0.0)
        + steps.get("sqlmesh plan", 0.0)
        + max(0.0, steps.get("sqlmesh run", 0.0) - evaluated)
    )
    loaded = sum(b.rows_loaded for b in summary.batches)
    models = {k.removeprefix("model "): v for k, v in layers.items() if k.startswith("model ")}
    return Increment(seconds, loaded, models)


def no_change_run(folder: Path) -> float:
    """`bankdw run` with nothing new, as its own process: wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(folder / "prefect")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"bankdw run failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def measure_history(
    server: PgParams, days: int, increments: int, scale: int, say: Callable[[str], None]
) -> History:
    from flows.pipeline import run_flow
    from flows.settings import get_settings
    from flows.simulate import simulate

    history = History(days)
    names = (f"bench_inc_src_{days}", f"bench_inc_wh_{days}")
    source_url, warehouse_url = (recreate_database(server, n) for n in names)
    # The bank's last day (history and increments) falls before today: no stamp from the future.
    start = date.today() - timedelta(days=days + increments + 2)
    settings = get_settings()
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f"bankdw-bench-{days}-") as folder,
            pointed_at(warehouse_url, source_url, Path(folder)),
        ):

            def advance(n_days: int) -> None:
                simulate(
                    source_url,
                    n_days,
                    scale=scale,
                    seed=settings.sim_seed,
                    bad_rate=settings.sim_bad_rate,
                    aml_cases=settings.sim_aml_cases,
                    start_date=start,
                    landing_dir=Path(folder) / "landing",
                )

            say(f"{days} days: simulating the bank")
            advance(days)
            say(f"{days} days: loading and building the history")
            started = time.perf_counter()
            run_flow()
            history.build_seconds = time.perf_counter() - started
            with psycopg.connect(warehouse_url) as conn:
                history.raw_rows = conn.execute(
                    "select sum(rows_loaded) from ops.batches where status = 'committed'"
                ).fetchone()[0]
            # The first run after the history redoes the hour the history was published in
            # (allow_partials: README "Every run costs what is new"), i.e. the whole history,
            # once; then the tables it rewrote hold that many dead rows until autovacuum gets
            # to them. A deployed warehouse is past both: warm up, and vacuum as autovacuum
            # would have by the next day.
            say(f"{days} days: warm-up increment, then vacuum")
            advance(1)
            advance_clock(warehouse_url)
            run_flow()
            settle(warehouse_url)
            for n in range(1, increments + 1):
                advance(1)
                advance_clock(warehouse_url)
                say(f"{days} days: increment {n}/{increments}")
                history.increments.append(measure_increment(warehouse_url))
            for n in range(1, increments + 1):
                say(f"{days} days: run with nothing new {n}/{increments}")
                history.no_change_seconds.append(no_change_run(Path(folder)))
    finally:
        for name in names:
            drop_database(server, name)
    return history


def report(histories: Sequence[History]) -> str:
    """A Markdown table: each step's median per history, and the ratio to the first."""
    base = histories[0]
    head = ["step"] + [f"{h.days} days (s)" for h in histories]
    head += [f"{h.days} / {base.days}" for h in histories[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for step in (*STEPS, "no-change run"):
        values = [h.median(step) for h in histories]
        ratios = [f"{v / values[0]:.2f}" if values[0] >= 0.05 else "-" for v in values[1:]]
        lines.append("| " + " | ".join([step, *(f"{v:.2f}" for v in values), *ratios]) + " |")
    models = sorted({m for h in histories for i in h.increments for m in i.models})
    medians = {
        m: [statistics.median(i.models.get(m, 0.0) for i in h.increments) for h in histories]
        for m in models
    }
    slowest = sorted(models, key=lambda m: medians[m][-1], reverse=True)[:10]
    lines += ["", "| model (with its audits) | " + " | ".join(head[1:]) + " |"]
    lines.append("|" + " --- |" * len(head))
    for m in slowest:
        values = medians[m]
        ratios = [f"{v / values[0]:.2f}" if values[0] >= 0.05 else "-" for v in values[1:]]
        lines.append("| " + " | ".join([m, *(f"{v:.2f}" for v in values), *ratios]) + " |")
    rows = ", ".join(f"{h.days} days: {h.raw_rows:,} raw rows" for h in histories)
    builds = ", ".join(f"{h.days} days: {h.build_seconds:.0f} s" for h in histories)
    loaded = ", ".join(
        f"{h.days} days: {statistics.median(i.rows_loaded for i in h.increments):,.0f}"
        for h in histories
    )
    return "\n".join(
        [
            *lines,
            "",
            f"History: {rows}.",
            f"History load and build: {builds}.",
            f"Rows per increment (median): {loaded}.",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bankdw bench incremental", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--days", type=int, default=30, help="history H, in days (default 30)")
    parser.add_argument("--factor", type=int, default=10, help="the second history, H x this")
    parser.add_argument(
        "--also-days", type=int, action="append", default=[], help="a further history size"
    )
    parser.add_argument("--increments", type=int, default=3, help="runs measured per history")
    parser.add_argument("--scale", type=int, default=None, help="customers at day 0")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console

    from flows.settings import get_settings

    args = parse_args(argv)
    console = Console()
    scale = args.scale or get_settings().sim_scale
    sizes = [args.days, args.days * args.factor, *args.also_days]
    started = time.perf_counter()

    def say(message: str) -> None:
        console.print(f"[dim]{datetime.now(UTC):%H:%M:%S}[/] {message}")

    with benchmark_server() as server:
        histories = [measure_history(server, d, args.increments, scale, say) for d in sizes]
    console.print()
    console.print(report(histories))
    console.print(f"\nwall time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
