"""The `bankdw` command: run the warehouse, simulate the bank, reach the databases."""

from __future__ import annotations

import enum
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from flows import logs
from flows.failures import explain
from flows.output import console, err_console, shorten
from flows.settings import get_settings

T = TypeVar("T")

log = logging.getLogger("bankdw")


class ReportingGroup(TyperGroup):
    """Commands whose unexpected failures end in one message (failures.explain), the traceback
    in the log: a safety net under the commands' own messages."""

    def invoke(self, ctx: typer.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own: usage, exit
            raise
        except Exception as err:
            raise _failed(err) from err


app = typer.Typer(
    cls=ReportingGroup,
    help="An open data warehouse for a retail bank.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The warehouse database: start, stop, connect.", no_args_is_help=True)
app.add_typer(db_app, name="db")
quarantine_app = typer.Typer(help="Rows that broke a data contract.", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")


class DeleteChoice(enum.StrEnum):
    """How extraction looks for rows the source deleted (flows/extract/deletes.py)."""

    auto = "auto"
    recent = "recent"
    full = "full"
    off = "off"


DELETES_HELP = (
    "Rows the source deleted: auto (recent keys every run, every key when a full sweep is due), "
    "recent, full (every key now) or off."
)

# Set by main(): the real `bankdw` process owns its logging; a test calling the app in its own
# process keeps the test runner's.
_owns_logging = False


@app.callback()
def command(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Show logs and tracebacks, SQLMesh's progress, whole rows."
        ),
    ] = False,
) -> None:
    """Before every command: settings read, local state owner-only, logging decided."""
    from pydantic import ValidationError

    from flows.local_state import private_dir, private_umask

    logs.set_verbose(verbose)
    previous = private_umask()
    ctx.call_on_close(lambda: os.umask(previous))  # only matters to a caller in-process
    try:
        settings = get_settings()
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in err.errors()
        )
        raise _fail(
            f"bad setting: {problems}", "fix it in .env (repository root) or the environment"
        ) from err
    data_dir = private_dir(settings.data_dir, embedded_server=settings.uses_embedded_warehouse)
    if _owns_logging:
        logs.setup(data_dir / "logs", verbose, settings.log_format)


def _show_targets(warehouse: bool = True, source: bool = False) -> None:
    """Say which databases a command writes or reads before it does (never a password)."""
    from flows.warehouse import describe_source, describe_warehouse

    if warehouse:
        err_console.print(f"[dim]warehouse:[/] {escape(describe_warehouse())}")
    if source:
        err_console.print(f"[dim]source:[/]    {escape(describe_source())}")


_temporary_api = None


def _prepare_prefect(scheduler: bool = False) -> None:
    """Start Prefect's temporary API now (unless a server is configured), so that it boots while
    the command imports and connects; its state stays inside the project's .warehouse/.
    `scheduler`: with the services that turn schedules into runs (`bankdw serve`)."""
    global _temporary_api
    from flows.prefect_api import configured_api_url, start_temporary_api

    if not configured_api_url() and "PREFECT_HOME" not in os.environ:
        home = get_settings().data_dir / "prefect"
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
    # Prefect's run records (INFO) reach bankdw's handlers only at this level: the JSON log wants
    # them (the screen still shows warnings only, unless --verbose).
    json_logs = get_settings().log_format == "json"
    os.environ.setdefault(
        "PREFECT_LOGGING_LEVEL", "INFO" if logs.verbose() or json_logs else "WARNING"
    )
    # On a busy 2-core machine the server needs more than Prefect's default 20 s now and then.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    # From the main thread, tied to this process.
    _temporary_api = start_temporary_api(home, scheduler=scheduler)


def _prefect_ready() -> None:
    """Before the first flow: the temporary API (if any) answers."""
    if _temporary_api is not None:
        timeout = float(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
        _temporary_api.wait_until_ready(timeout)


def _fail(message: str, hint: str | None = None) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}")
    if hint:
        err_console.print(f"[yellow]next:[/] {escape(hint)}")
    return typer.Exit(code=1)


def _failed(err: BaseException, hint: str | None = None) -> typer.Exit:
    """One message for `err` (which connection, the cause, what to do); its traceback goes to
    the log, and to the screen with --verbose."""
    message, known = explain(err)
    log.error("%s", message, exc_info=err)
    return _fail(message, known or hint)


def batches_table(batches) -> Table:  # type: ignore[no-untyped-def]
    """One line per entity: a feed brings one batch per file, so they are added up."""
    totals: dict[str, list[float]] = {}
    for b in batches:
        row = totals.setdefault(b.entity, [0, 0, 0, 0, 0, 0.0])
        for i, value in enumerate(
            (1, b.rows_in, b.rows_loaded, b.rows_quarantined, b.rows_deleted, b.seconds)
        ):
            row[i] += value
    table = Table(title="Batches", title_justify="left")
    for column in ("entity", "batches", "rows in", "loaded", "quarantined", "deletes", "seconds"):
        table.add_column(column, justify="left" if column == "entity" else "right")
    for entity, (n, rows_in, loaded, quarantined, deleted, seconds) in totals.items():
        table.add_row(
            entity,
            f"{n:,.0f}",
            f"{rows_in:,.0f}",
            f"{loaded:,.0f}",
            f"{quarantined:,.0f}",
            f"{deleted:,.0f}",
            f"{seconds:.2f}",
        )
    return table


# Ignored files are listed up to this many; ops.ignored_files keeps them all.
IGNORED_SHOWN = 20


def print_notes(summary) -> None:  # type: ignore[no-untyped-def]
    """What an extraction saw besides its rows, one line each, by kind (file names are data,
    never markup)."""
    ignored = summary.ignored
    notes = [
        *(("schema drift", f"{n} (kept; see ops.schema_versions)") for n in summary.drift),
        *(("re-sent", n) for n in summary.resent),
        *(("repeated", n) for n in summary.repeated),
        *(("ignored", n) for n in ignored[:IGNORED_SHOWN]),
    ]
    if len(ignored) > IGNORED_SHOWN:
        notes.append(("ignored", f"{len(ignored) - IGNORED_SHOWN} more (see ops.ignored_files)"))
    if summary.feeds_off:
        notes.append(("feeds off", f"{summary.feeds_off}: no feed file was looked for"))
    for kind, note in notes:
        console.print(f"[yellow]{kind}:[/] {escape(note)}")


def _print_summary(summary) -> None:  # type: ignore[no-untyped-def]
    steps = Table(title="Steps", title_justify="left")
    steps.add_column("step")
    steps.add_column("seconds", justify="right")
    steps.add_column("detail")
    for step, seconds, detail in summary.steps:
        steps.add_row(step, f"{seconds:.1f}", detail)
    console.print(steps)
    if summary.batches:
        console.print(batches_table(summary.batches))
    print_notes(summary)
    if any(b.source_file for b in summary.batches):
        console.print("GX judged new feed files: `bankdw docs` builds their Data Docs")

    layers = Table(title="Rows per layer", title_justify="left")
    layers.add_column("layer")
    layers.add_column("table")
    layers.add_column("rows", justify="right")
    for layer, tables in summary.layer_rows.items():
        for table, rows in tables.items():
            about = "~" if f"{layer}.{table}" in summary.estimated_rows else ""
            layers.add_row(layer, table, f"{about}{rows:,}")
    console.print(layers)
    if summary.estimated_rows:
        console.print("~: estimated by the planner (the table is too large to count every run)")

    invalid = Table(title="Versions silver held back in this run", title_justify="left")
    invalid.add_column("table: rule")
    invalid.add_column("rows", justify="right")
    for rule, rows in summary.invalid_by_rule.items():
        invalid.add_row(rule, f"{rows:,}")
    invalid.add_row("[bold]total[/]", f"[bold]{sum(summary.invalid_rows.values()):,}[/]")
    console.print(invalid)
    if summary.warnings_by_rule:
        warned = Table(
            title="Versions loaded with a warning in this run (a link they carry is not loaded)",
            title_justify="left",
        )
        warned.add_column("table: rule")
        warned.add_column("rows", justify="right")
        for rule, rows in summary.warnings_by_rule.items():
            warned.add_row(rule, f"{rows:,}")
        console.print(warned)


@app.command()
def run(
    days: Annotated[
        int | None, typer.Option(min=1, help="Simulate N more days first (demo source only).")
    ] = None,
    scale: Annotated[
        int | None, typer.Option(min=1, help="Customers at day 0 when the demo source is created.")
    ] = None,
    deletes: Annotated[DeleteChoice, typer.Option(help=DELETES_HELP)] = DeleteChoice.auto,
) -> None:
    """The main job: simulate (empty demo source), extract, SQLMesh plan/run (with each model's
    audits), summary."""
    from flows.preflight import check_source, check_warehouse

    settings = get_settings()
    _show_targets(source=True)
    _prepare_prefect()
    try:
        check_warehouse()
        check_source(will_simulate=settings.uses_demo_source)
    except Exception as err:
        raise _failed(err) from err
    from flows.pipeline import run_flow, step_listeners

    def show_step(step: str, seconds: float | None) -> None:
        if seconds is None:
            err_console.print(f"[bold cyan]→ {step}[/] …")
        else:
            err_console.print(f"[green]✓ {step}[/] ({seconds:.1f} s)")

    step_listeners.append(show_step)
    try:
        _prefect_ready()
        summary = run_flow(days=days, scale=scale, deletes=deletes.value)
    except Exception as err:
        raise _failed(
            err, "fix the cause above and run `bankdw run` again; it resumes where it stopped"
        ) from err
    finally:
        step_listeners.remove(show_step)
    _print_summary(summary)


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "failed": "bold red",
    "crashed": "bold red",
}


@app.command()
def status(
    runs: Annotated[
        int | None,
        typer.Option("--runs", "-n", min=1, help="Runs to list (default STATUS_RUNS_SHOWN, 10)."),
    ] = None,
) -> None:
    """The last runs (ops.pipeline_runs), each watched source's freshness against its limit
    (FRESHNESS_LIMIT_HOURS), open quarantine per entity and rule, and the audits of the latest
    transformation. Exit code 1 when the last run failed or crashed or a source is stale (for
    a monitor's check), 0 otherwise."""
    from flows.status import read_status
    from flows.warehouse import connect_warehouse

    settings = get_settings()
    _show_targets()
    try:
        with connect_warehouse(settings) as conn:
            found = read_status(conn, settings, runs or settings.status_runs_shown)
    except Exception as err:
        raise _failed(err) from err

    table = Table(title="Runs (ops.pipeline_runs)", title_justify="left")
    for column, right in (
        ("run", True),
        ("flow run", False),
        ("flow", False),
        ("status", False),
        ("started (UTC)", False),
        ("seconds", True),
        ("raw rows", True),
        ("quarantined", True),
        ("deletes", True),
        ("silver", True),
        ("vault", True),
        ("gold", True),
        ("DQ %", True),
        ("audits ok/failed", True),
        ("alerts raised/sent", True),
    ):
        table.add_column(column, justify="right" if right else "left")
    for r in found.runs:
        style = STATUS_STYLE.get(r.status, "")
        audits = "" if r.audits_passed is None else f"{r.audits_passed}/{r.audits_failed}"
        alerts = "" if r.alerts_raised is None else f"{r.alerts_raised}/{r.alerts_sent}"
        table.add_row(
            str(r.run_id),
            Text(f"{r.flow_run_name or ''} {(r.flow_run_id or '')[:8]}".strip()),
            r.flow_name,
            Text(r.status, style=style),
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            "" if r.seconds is None else f"{r.seconds:.1f}",
            _count(r.rows_loaded),
            _count(r.rows_quarantined),
            _count(r.rows_deleted),
            _count(r.silver_rows),
            _count(r.vault_rows),
            _count(r.gold_rows),
            "" if r.dq_score is None else f"{r.dq_score:.2f}",
            audits,
            alerts,
        )
    console.print(table if found.runs else "no run recorded yet (ops.pipeline_runs is empty)")
    for r in found.runs:
        if r.status in ("failed", "crashed") and r.error:
            error = r.error if logs.verbose() else shorten(r.error, PAYLOAD_SHOWN)
            console.print(Text(f"run {r.run_id} {r.status}: {error}", style="red"))

    fresh = Table(title="Freshness (FRESHNESS_LIMIT_HOURS)", title_justify="left")
    for column in ("source", "last delivery (UTC)", "hours since", "limit (h)", "state"):
        fresh.add_column(column, justify="right" if "h)" in column or "since" in column else "left")
    for f in found.freshness:
        state = (
            Text("never delivered", style="dim")
            if f.hours_silent is None
            else Text("stale", style="bold red")
            if f.stale
            else Text("fresh", style="green")
        )
        fresh.add_row(
            f.source,
            "" if f.last_delivery is None else f"{f.last_delivery:%Y-%m-%d %H:%M}",
            "" if f.hours_silent is None else f"{f.hours_silent:.1f}",
            f"{f.limit_hours:g}",
            state,
        )
    console.print(fresh if found.freshness else "no source watched (FRESHNESS_LIMIT_HOURS)")

    quarantine = Table(title="Open quarantine (pending rows)", title_justify="left")
    for column in ("entity", "rule", "rows"):
        quarantine.add_column(column, justify="right" if column == "rows" else "left")
    for entity, rule, rows in found.quarantine:
        quarantine.add_row(entity, rule, f"{rows:,}")
    console.print(quarantine if found.quarantine else "quarantine: nothing open")

    if found.audits:
        failed = [a for a in found.audits if not a.passed]
        run = f"flow run {found.audits_flow_run_id[:8]}, " if found.audits_flow_run_id else ""
        title = (
            f"Audits of the latest transformation ({run}{found.audits_at:%Y-%m-%d %H:%M} UTC)"
            f": {len(found.audits) - len(failed)} passed, {len(failed)} failed"
        )
        audits = Table(title=title, title_justify="left")
        for column in ("model", "audit", "result", "bad rows"):
            audits.add_column(column, justify="right" if column == "bad rows" else "left")
        # Failed audits always; passed ones with --verbose (dozens, all alike).
        for a in found.audits:
            if a.passed and not logs.verbose():
                continue
            result = Text("passed", style="green") if a.passed else Text("FAILED", style="bold red")
            audits.add_row(a.model, a.audit, result, _count(a.bad_rows))
        if failed or logs.verbose():
            console.print(audits)
        else:
            console.print(f"{title}: every audit passed (`bankdw -v status` lists them)")
    else:
        console.print("audits: none recorded yet")

    problems = found.problems()
    for problem in problems:
        err_console.print(f"[bold red]problem:[/] {escape(problem)}")
    if problems:
        raise typer.Exit(code=1)


@app.command()
def simulate(
    days: Annotated[int, typer.Option(min=1, help="Simulated days to add.")],
    scale: Annotated[int | None, typer.Option(min=1, help="Customers at day 0.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same rows).")] = None,
    bad_rate: Annotated[
        float | None, typer.Option(min=0.0, max=0.5, help="Share of known bad records.")
    ] = None,
    aml_cases: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=100.0,
            help="AML cases of each rule planted per 30 days per 1,000 customers (0: none).",
        ),
    ] = None,
    source_url: Annotated[
        str | None,
        typer.Option(
            help="Write to this database instead of the embedded demo source "
            "(never taken from SOURCE_URL)."
        ),
    ] = None,
) -> None:
    """Advance the simulated core bank by N days, writing each day's feed files (as `bankdw run
    --days N` does) into the landing folder."""
    from rich.progress import Progress

    from flows.simulate.demo import advance
    from flows.simulate.writer import ForeignDatabaseError
    from flows.warehouse import connect_url
    from flows.warehouse import source_url as demo_source_url

    settings = get_settings()
    if source_url is None and settings.source_url is not None:
        raise _fail(
            "SOURCE_URL names a real source, and the simulator never writes to it",
            "pass --source-url explicitly to simulate into a database of your choice",
        )
    if source_url is None and not settings.uses_demo_source:
        raise _fail(
            "the warehouse is a server (WAREHOUSE_URL): the simulator writes only to the embedded "
            "demo bank or to a database named with --source-url",
            "pass --source-url with an empty database of your choice",
        )
    if source_url is not None:
        from flows.pgurl import parse_url

        err_console.print(f"[dim]simulating into:[/] {escape(parse_url(source_url).describe())}")
        connect_url(source_url, "database named by --source-url", "--source-url").close()
    else:
        _show_targets(warehouse=False, source=True)
    target = source_url or demo_source_url()
    with Progress(console=err_console, transient=True) as progress:
        bar = progress.add_task("simulating days", total=days)
        try:
            summary = advance(
                target,
                days,
                scale=scale,
                seed=seed,
                bad_rate=bad_rate,
                aml_cases=aml_cases,
                progress=lambda done, total: progress.update(bar, completed=done),
            )
        except ForeignDatabaseError as err:
            raise _fail(str(err), "pass --source-url with an empty database") from err
        except ValueError as err:
            raise _fail(str(err)) from err
    table = Table(title="Simulation", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in summary.rows():
        table.add_row(label, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    if summary.landing_dir is not None:
        console.print(f"feed files: {escape(str(summary.landing_dir))}")
    else:
        console.print(
            "[yellow]feed files:[/] not written: no landing folder (set LANDING_DIR; a server "
            "warehouse gets no demo default)"
        )


@app.command()
def extract(
    deletes: Annotated[DeleteChoice, typer.Option(help=DELETES_HELP)] = DeleteChoice.auto,
) -> None:
    """Extract every source table (incremental) and every new feed file into raw."""
    from flows.pipeline import extract_all_flow, report_extraction
    from flows.summary import RunSummary

    extraction = _run_on_warehouse(lambda: extract_all_flow(deletes.value), source=True)
    summary = RunSummary()
    report_extraction(summary, extraction)
    console.print(batches_table(summary.batches))
    print_notes(summary)


def _environment(name: str) -> str:
    from flows.environments import check_name

    try:
        return check_name(name)
    except ValueError as err:
        raise _fail(str(err)) from err


def _print_plan(summary) -> None:  # type: ignore[no-untyped-def]
    """What a plan or promote changed, model by model."""
    lines = [
        *(f"  + {m} (added)" for m in summary.added),
        *(f"  - {m} (removed)" for m in summary.removed),
        *(f"  ~ {m} ({c})" for m, c in summary.directly_modified.items()),
        *(f"  ~ {m} (indirectly)" for m in summary.indirectly_modified),
    ]
    if lines:
        console.print(f"[bold]{summary.environment}[/]: {len(lines)} model(s) changed")
        for line in lines:
            console.print(escape(line))
    else:
        console.print(f"[bold]{summary.environment}[/]: no model changed")


def _run_on_warehouse(run: Callable[[], T], source: bool = False, scheduler: bool = False) -> T:
    """The frame of a command that runs a flow: show the targets, check the warehouse (and the
    source), make Prefect ready, run; any failure ends in one message (`_failed`)."""
    from flows.preflight import check_source, check_warehouse

    _show_targets(source=source)
    _prepare_prefect(scheduler)
    try:
        check_warehouse()
        if source:
            check_source()
        _prefect_ready()
        return run()
    except Exception as err:
        raise _failed(err) from err


def _transform(environment: str) -> None:
    from flows.pipeline import transform_flow

    summary = _run_on_warehouse(lambda: transform_flow(environment))
    _print_plan(summary)
    console.print(f"[green]transform finished for environment {environment}[/]")


@app.command()
def transform(
    environment: Annotated[str, typer.Option(help="SQLMesh environment.")] = "prod",
) -> None:
    """SQLMesh plan/apply and run, then audits."""
    _transform(_environment(environment))


@app.command()
def plan(
    environment: Annotated[
        str, typer.Argument(help="The environment: staging (the default), or dev_*, pr_*...")
    ] = "staging",
) -> None:
    """Build the project's changes into a SQLMesh environment (e.g. gold__staging), without
    touching prod: changed models get tables of their own, the rest are views on prod's. Then
    `bankdw diff staging` and `bankdw promote`."""
    _transform(_environment(environment))


@app.command()
def diff(
    environment: Annotated[str, typer.Argument(help="The environment to compare.")] = "staging",
    against: Annotated[str, typer.Option(help="The environment compared against.")] = "prod",
) -> None:
    """Per changed model: columns added, removed or retyped, and rows only in one side, equal or
    changed (SQLMesh table_diff, joined on each model's grain)."""
    from flows.environments import diff_environments
    from flows.preflight import check_warehouse
    from flows.transform import Transformation

    environment, against = _environment(environment), _environment(against)
    _show_targets()
    try:
        check_warehouse()
        with Transformation(
            f"bankdw diff {environment}", on_wait=lambda m: err_console.print(m)
        ) as t:
            diffs = diff_environments(t, environment, against)
    except ValueError as err:
        raise _fail(str(err)) from err
    except Exception as err:
        raise _failed(err) from err
    if not diffs:
        console.print(f"{environment} and {against}: no model differs")
        return
    for model_diff in diffs:
        console.print(f"[bold]{escape(model_diff.model)}[/] ({against} -> {environment})")
        for line in model_diff.describe():
            console.print(f"  {escape(line)}")


@app.command()
def promote(
    source: Annotated[
        str, typer.Option("--from", help="The environment prod becomes.")
    ] = "staging",
) -> None:
    """Make prod what staging is, as a virtual update: prod's views point at the tables staging
    built and checked; nothing is recomputed. Refused if the project files changed since
    `bankdw plan staging`."""
    from flows.pipeline import promote_flow

    source = _environment(source)
    summary = _run_on_warehouse(lambda: promote_flow(source))
    _print_plan(summary)
    console.print(f"[green]{source} promoted to prod[/]")


@app.command()
def serve(
    limit: Annotated[
        int | None,
        typer.Option(min=1, help="At most this many flow runs at once (default: no limit)."),
    ] = None,
) -> None:
    """Serve every deployment of prefect.yaml from this process, on their schedules (a laptop:
    no Prefect server, work pool or worker needed). Ctrl-C stops it; the schedules are paused
    until the next `bankdw serve`."""
    from flows.deployments import prefect_yaml_path, serve_all

    path = prefect_yaml_path()
    err_console.print(f"[dim]deployments:[/] {escape(str(path))}")
    _run_on_warehouse(lambda: serve_all(path, limit=limit), scheduler=True)


@app.command("sqlmesh", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sqlmesh_by_hand(ctx: typer.Context) -> None:
    """Run a SQLMesh command on the warehouse, under its SQLMesh lock, after publishing the
    batches committed since the last transformation (e.g. `bankdw sqlmesh plan staging`)."""
    from sqlmesh.cli.main import cli

    from flows.transform import Transformation, export_connection_env

    settings = get_settings()
    _show_targets()
    try:
        with Transformation("bankdw sqlmesh", on_wait=lambda m: err_console.print(m)) as t:
            export_connection_env(settings)  # config.yaml's connection, for SQLMesh's own CLI
            try:
                code = cli.main(
                    args=["--paths", str(settings.project_root), *ctx.args],
                    prog_name="bankdw sqlmesh",
                    standalone_mode=False,
                )
            finally:
                t.forget_runs()
                t.grant_readers()  # a plan of prod recreates gold's views
    except Exception as err:
        raise _failed(err) from err
    raise typer.Exit(code=code if isinstance(code, int) else 0)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Benchmarks (tools beside the product, in bench/): `bankdw bench extraction [--rows N ...]`
    (our extraction vs a bare COPY pipe vs pandas) or `bankdw bench incremental [--days 30 ...]`
    (the same increment on 1x and 10x the history)."""
    args = list(ctx.args)
    if args[:1] == ["incremental"]:
        from bench.incremental import main

        _prepare_prefect()
        _prefect_ready()
        raise typer.Exit(code=main(args[1:]))
    from bench.extraction import main

    raise typer.Exit(code=main(args[1:] if args[:1] == ["extraction"] else args))


def cleanup_table(summary) -> Table:  # type: ignore[no-untyped-def]
    """Rows removed per table (zeros too: a table looked at and found clean is information)."""
    table = Table(
        title=f"cleanup: older than {summary.days} days (before {summary.cutoff:%Y-%m-%d %H:%M %Z})"
    )
    table.add_column("table")
    table.add_column("rows removed", justify="right")
    table.add_column("vacuumed")
    for name, count in summary.removed.items():
        table.add_row(escape(name), f"{count:,}", "yes" if name in summary.vacuumed else "")
    table.add_row("[bold]total[/]", f"[bold]{summary.total:,}[/]", "")
    return table


@app.command()
def cleanup(
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Remove what is older than this many days (RETENTION_DAYS)."),
    ] = None,
    janitor: Annotated[
        bool, typer.Option(help="Run SQLMesh's janitor afterwards (under the SQLMesh lock).")
    ] = True,
    vacuum: Annotated[
        bool, typer.Option(help="VACUUM (ANALYZE) the tables rows were removed from.")
    ] = True,
) -> None:
    """Remove resolved quarantine rows and ops logs older than N days; never pending quarantine
    rows, the ledgers (batches, files, watermarks...) or raw. Safe to repeat."""
    from flows.preflight import check_warehouse
    from flows.retention import cleanup as run_cleanup

    _show_targets()
    try:
        check_warehouse()
        summary = run_cleanup(
            days, janitor=janitor, vacuum=vacuum, on_wait=lambda m: err_console.print(m)
        )
    except ValueError as err:
        raise _fail(str(err)) from err
    except Exception as err:
        raise _failed(err) from err
    console.print(cleanup_table(summary))
    console.print(f"sqlmesh janitor: {escape(summary.janitor)}")
    for note in summary.notes:
        console.print(f"[dim]{escape(note)}[/]")


@app.command()
def init(
    pipeline_password: Annotated[
        bool,
        typer.Option(
            "--pipeline-password",
            help="Prompt for a password and let bankdw_pipeline log in with it.",
        ),
    ] = False,
) -> None:
    """On a server, once, as an administrator (WAREHOUSE_URL naming a role that may create
    roles): create the roles `analyst` (reads prod's gold) and `bankdw_pipeline` (writes the
    warehouse) from sql/roles, and let them into the warehouse database. Safe to repeat."""
    import psycopg

    from flows.roles import ANALYST, PIPELINE, CannotCreateRoles, NotDatabaseOwner, init_roles
    from flows.warehouse import connect_warehouse

    password = None
    if pipeline_password:
        password = typer.prompt(
            f"password for {PIPELINE}", hide_input=True, confirmation_prompt=True
        )
    _show_targets()
    try:
        with connect_warehouse(autocommit=True) as conn:
            result = init_roles(conn, password)
    except CannotCreateRoles as err:
        raise _fail(
            f"role {err} may not create roles: run `bankdw init` with WAREHOUSE_URL naming a "
            "superuser or a role with CREATEROLE that owns the warehouse database"
        ) from err
    except NotDatabaseOwner as err:
        raise _fail(
            f"role {err} does not own the warehouse database: run `bankdw init` as the "
            "warehouse database's owner or a superuser"
        ) from err
    except psycopg.errors.InsufficientPrivilege as err:
        raise _fail(
            f"{str(err).strip()}: run `bankdw init` as the warehouse database's owner or a "
            "superuser"
        ) from err
    except Exception as err:
        raise _failed(err) from err
    for role in (ANALYST, PIPELINE):
        state = "created" if role in result.created else "exists"
        console.print(f"role {role}: {state}")
    console.print(
        f"database {escape(result.database)}: {ANALYST} may connect (and read prod's gold once "
        f"the pipeline has built it); {PIPELINE} may connect and create schemas"
    )
    if result.password_set:
        console.print(f"{PIPELINE} may log in with the password given")
    elif not result.pipeline_can_login:
        console.print(
            f"[yellow]next:[/] {PIPELINE} has no login yet: `bankdw init --pipeline-password`, "
            f"then point WAREHOUSE_URL at {PIPELINE}"
        )


class DocsChoice(enum.StrEnum):
    """What `bankdw docs` builds."""

    gx = "gx"
    gold = "gold"


@app.command()
def docs(
    what: Annotated[
        DocsChoice,
        typer.Argument(
            help="gx: GX Data Docs (HTML) of the contracts and feed validations; gold: the data "
            "dictionary docs/gold.md from the gold models' descriptions."
        ),
    ] = DocsChoice.gx,
) -> None:
    """Build GX Data Docs (HTML) from every contract and the kept validations of feed files, or
    (`bankdw docs gold`) gold's data dictionary, docs/gold.md.

    Not part of a run: rendering every kept validation costs more as they accumulate. The data
    dictionary needs no database: it is read from the models.
    """
    if what is DocsChoice.gold:
        from flows.dictionary import write

        path, missing = write(get_settings().project_root)
        console.print(f"data dictionary: {path}")
        if missing:
            raise _fail(
                f"no description for {', '.join(missing)}",
                "comment the model (/* ... */ before MODEL) and each column (/* ... */ after it)",
            )
        return
    from flows.pipeline import build_data_docs

    path = build_data_docs()
    console.print(f"GX Data Docs: {path}" if path else "no Data Docs site configured")


@app.command("sql")
def run_sql(
    query: Annotated[str, typer.Argument(help="One SQL statement.")],
    source: Annotated[
        bool, typer.Option("--source", help="Query the source instead of the warehouse.")
    ] = False,
) -> None:
    """Run one query and print the result as a table (full width when piped)."""
    import psycopg
    from rich.text import Text

    from flows.warehouse import connect_source, connect_warehouse

    _show_targets(warehouse=not source, source=source)
    try:
        with connect_source() if source else connect_warehouse() as conn:
            cur = conn.execute(query)
            if cur.description is None:
                console.print(f"{cur.statusmessage}")
                conn.commit()
                return
            table = Table()
            for column in cur.description:
                table.add_column(column.name)
            for row in cur.fetchall():  # values are data, never markup
                table.add_row(*(Text("" if v is None else str(v)) for v in row))
            console.print(table)
    except psycopg.Error as err:
        raise _fail(
            str(err).strip(), "check the query; `bankdw db psql` opens an interactive session"
        ) from err


@quarantine_app.command("list")
def quarantine_list(
    entity: Annotated[str | None, typer.Option(help="Only this entity (raw table name).")] = None,
    sample: Annotated[int, typer.Option(min=0, help="Pending rows to show per entity.")] = 3,
) -> None:
    """Counts by rule (pending, replayed, superseded) and a sample of pending rows: each row's
    key first, then its payload (cut short unless --verbose)."""
    from flows.quality.replay import counts_by_rule, quarantine_entities, samples
    from flows.warehouse import connect_warehouse

    with connect_warehouse() as conn:
        entities = quarantine_entities(conn)
        if entity is not None and entity not in entities:
            raise _fail(f"no quarantine for {entity!r}", f"known: {', '.join(entities) or 'none'}")
        for name in [entity] if entity else entities:
            table = Table(title=f"quarantine.{name}", title_justify="left")
            for column in ("rule", "state", "rows"):
                table.add_column(column, justify="right" if column == "rows" else "left")
            for rule, state, rows in counts_by_rule(conn, name):
                table.add_row(rule, state, f"{rows:,}")
            console.print(table)
            for qid, batch, file, line, rules, payload in samples(conn, name, sample):
                console.print(describe_sample(name, qid, batch, file, line, rules, payload))


# A sample's payload is cut to this many characters unless --verbose.
PAYLOAD_SHOWN = 160


def describe_sample(
    entity: str,
    qid: int,
    batch: int,
    file: str | None,
    line: int | None,
    rules: list[str],
    payload: str,
) -> Text:
    """`#id where key=value: rules: payload`: the key that finds the row comes before anything
    that may be cut (data, never markup)."""
    import json

    from rich.text import Text

    from flows.quality.contracts import contract_for

    where = f"{file}:{line}" if file else f"batch {batch}"
    try:
        fields = json.loads(payload)
    except ValueError:
        fields = {}
    key = ", ".join(
        f"{column}={fields[column]}" for column in contract_for(entity).keys if column in fields
    )
    shown = payload if logs.verbose() else shorten(payload, PAYLOAD_SHOWN)
    return Text(f"  #{qid} {where} {key or 'no key'}: {', '.join(rules)}: {shown}")


@quarantine_app.command("replay")
def quarantine_replay(
    entity: Annotated[str, typer.Option(help="The entity (raw table name) to replay.")],
    batch: Annotated[int | None, typer.Option(help="Only rows rejected by this batch.")] = None,
) -> None:
    """Re-validate pending rows; move those that now pass into raw as a new batch."""
    from flows.quality.replay import quarantine_entities, replay
    from flows.warehouse import connect_warehouse

    _show_targets()
    with connect_warehouse() as conn:
        if entity not in quarantine_entities(conn):
            raise _fail(f"no quarantine for {entity!r}", "see `bankdw quarantine list`")
        result = replay(conn, entity, batch)
    console.print(
        f"quarantine.{entity}: {result.checked:,} checked, {result.replayed:,} replayed into raw"
        f"{f' (batch {result.batch_id})' if result.batch_id else ''}, "
        f"{result.superseded:,} superseded by newer versions, "
        f"{result.still_failing:,} still failing"
    )


@db_app.command("start")
def db_start() -> None:
    """Start the embedded PostgreSQL in the background (it keeps running after this command)."""
    from flows.warehouse import source_params, start_embedded, warehouse_params

    settings = get_settings()
    if not settings.uses_embedded_warehouse:
        raise _fail("WAREHOUSE_URL is set: the warehouse is that server, there is nothing to start")
    start_embedded(settings, keep_running=True)
    console.print(f"warehouse: {warehouse_params().url()}")
    console.print(f"source:    {source_params().url()}")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded PostgreSQL."""
    from flows.warehouse import stop_embedded

    console.print("stopped" if stop_embedded() else "not running")


@db_app.command("url")
def db_url(
    source: Annotated[bool, typer.Option("--source", help="The source database instead.")] = False,
) -> None:
    """Print a libpq URL (starts the embedded server if needed and leaves it running)."""
    from flows.warehouse import source_url, start_embedded, warehouse_url

    if get_settings().uses_embedded_warehouse:
        start_embedded(keep_running=True)
    print(source_url() if source else warehouse_url())


@db_app.command("env")
def db_env() -> None:
    """Print `export` lines for SQLMesh's config.yaml: eval "$(bankdw db env)"."""
    import shlex

    from flows.transform import export_connection_env
    from flows.warehouse import start_embedded

    if get_settings().uses_embedded_warehouse:
        start_embedded(keep_running=True)
    for name, value in export_connection_env().items():
        print(f"export {name}={shlex.quote(value)}")


@db_app.command("psql")
def db_psql(
    source: Annotated[
        bool, typer.Option("--source", help="Connect to the source instead.")
    ] = False,
) -> None:
    """Open psql on the warehouse (or the source). The password goes to psql through its
    environment (PGPASSWORD, readable by this user only), never on its command line, which
    every user of the machine can read with `ps`."""
    from flows.warehouse import source_params, start_embedded, warehouse_params

    if get_settings().uses_embedded_warehouse:
        start_embedded(keep_running=True)
    psql = shutil.which("psql")
    if psql is None:
        from pgserver._commands import POSTGRES_BIN_PATH

        psql = str(POSTGRES_BIN_PATH / "psql")
    params = source_params() if source else warehouse_params()
    env = dict(os.environ)
    if params.password:
        env["PGPASSWORD"] = params.password
    sys.stdout.flush()
    os.execve(psql, [psql, params.url_without_password()], env)


def main() -> None:
    """The `bankdw` command: the app, with signals, deadlines and servers seen to (runtime.py)."""
    global _owns_logging
    from flows import runtime

    _owns_logging = True
    # Until logs.setup() has run, a record goes nowhere rather than to Python's last-resort
    # handler, which would print its traceback on the screen.
    logging.getLogger().addHandler(logging.NullHandler())
    runtime.run(app)


if __name__ == "__main__":
    main()
