"""Benchmark: our extraction into raw against a bare COPY pipe and a typical pandas script.

`bankdw bench extraction [--rows N ...] [--methods ours,ours_deletes,pipe,pandas]` builds a
core-bank source with N valid transactions (in SQL, with `generate_series`), then loads it with
each method into a fresh database on the same server and prints rows/s and peak memory side by
side:

- ours: `extract_table(..., "transactions", ...)` into raw, without delete detection;
- ours_deletes: the same with `detect_deletes=True`, as the flow runs it;
- pipe: `COPY (SELECT ...) TO STDOUT` piped into `COPY ... FROM STDIN` with psycopg 3, into a
  plain table with the same columns: the ceiling for any Python-driven copy;
- pandas: `pandas.read_sql` of the whole table through a SQLAlchemy engine (psycopg2), then
  `DataFrame.to_sql(if_exists="replace", index=False, chunksize=10_000)` with the default
  insert method: what a typical script does.

Each method runs in a subprocess of its own (`--worker`), so its peak RSS (`ru_maxrss`, imports
included) is its own. Only the load is timed. The server is a dedicated embedded PostgreSQL in a
temporary folder, or the one WAREHOUSE_URL names (databases `bench_*` on it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from flows.warehouse import PgParams, parse_url

if TYPE_CHECKING:
    from rich.console import Console

REPO_ROOT = Path(__file__).resolve().parent.parent
CORE_BANK_SQL = REPO_ROOT / "sql" / "source" / "corebank.sql"

METHODS = ("ours", "ours_deletes", "pipe", "pandas")
METHOD_LABELS = {
    "ours": "ours (deletes off)",
    "ours_deletes": "ours (deletes on)",
    "pipe": "bare COPY pipe",
    "pandas": "pandas",
}
ENTITY = "transactions"
RECORD_SOURCE = "corebank"
PANDAS_CHUNKSIZE = 10_000
DEFAULT_ROWS = 1_000_000
# pandas holds the whole table in memory and inserts through executemany: past 1M rows it only
# costs minutes and gigabytes without telling more (rows/s stays comparable at a smaller N).
DEFAULT_PANDAS_MAX_ROWS = 1_000_000
BUILD_CHUNK_ROWS = 250_000
ROWS_PER_ACCOUNT = 50
SPREAD_SECONDS = 4 * 24 * 3600  # updated_at spread over four days

# Targets from the issue, checked at every N.
TARGET_VS_PIPE = 0.5
TARGET_VS_PANDAS = 10.0
TARGET_PEAK_MB = 300.0
# "Flat" peak memory: the largest N may use at most this much more than the smallest.
FLAT_TOLERANCE = 0.10


@dataclass(frozen=True)
class Measurement:
    """One method's load, as its worker process reported it."""

    method: str
    rows: int  # rows the method said it loaded
    rows_in_target: int  # rows counted in the target table afterwards (live rows for raw)
    seconds: float
    peak_rss_kb: int

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_kb / 1024


@dataclass(frozen=True)
class Run:
    """Every method measured against one source of `rows` transactions."""

    rows: int
    measurements: list[Measurement]

    def get(self, method: str) -> Measurement | None:
        return next((m for m in self.measurements if m.method == method), None)


# --------------------------------------------------------------------------------------------
# Databases and the source


def database_names(prefix: str = "bench") -> dict[str, str]:
    """Source and one target database per method."""
    return {"source": f"{prefix}_source"} | {m: f"{prefix}_wh_{m}" for m in METHODS}


def recreate_database(server: PgParams, name: str) -> str:
    """Drop and create `name` (fresh for every measurement); returns its URL."""
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return server.url(name)


def drop_database(server: PgParams, name: str) -> None:
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
        )


TRANSACTIONS_INSERT = """
insert into transactions
select
    g as transaction_id,
    1 + (g * 7919) %% %(accounts)s as account_id,
    'TX' || lpad(g::text, 12, '0') as reference,
    (array['deposit', 'card_payment', 'transfer_in', 'transfer_out', 'direct_debit', 'fee',
           'interest'])[1 + g %% 7] as transaction_type,
    case when g %% 7 in (0, 2, 6) then 'credit' else 'debit' end as direction,
    round(1 + ((g * 2654435761) %% 250000) / 100.0, 2) as amount,
    'GBP' as currency,
    'booked' as status,
    (t.created_at - ((g %% 2) * interval '1 day'))::date as transaction_date,
    t.created_at::date as booking_date,
    (array['Tesco Stores', 'Sainsbury''s', 'Amazon UK', 'TfL Travel', 'HMRC', 'Octopus Energy',
           'Thames Water', 'J. Smith'])[1 + g %% 8] as counterparty,
    'Payment ' || lpad(g::text, 12, '0') as description,
    t.created_at,
    t.created_at + (g %% 30) * interval '1 minute' as updated_at
from generate_series(%(first)s::bigint, %(last)s::bigint) as g
cross join lateral (
    select timestamptz '2024-03-01 00:00:00+00'
           + (g::float8 * %(spread)s / %(rows)s) * interval '1 second' as created_at
) as t
"""

# The IBAN's check digits are real (ISO 13616 MOD-97 over the BBAN, NWBK = 23 32 11 20, and
# GB00 = 16 11 00), so silver would accept these accounts too.
ACCOUNTS_INSERT = """
insert into accounts
select
    a.account_id, 'CUR-STD',
    substr(a.sort_code_digits, 1, 2) || '-' || substr(a.sort_code_digits, 3, 2) || '-'
        || substr(a.sort_code_digits, 5, 2),
    a.account_number,
    'GB'
        || lpad((98 - mod(('23321120' || a.sort_code_digits || a.account_number || '161100')
                          ::numeric, 97))::text, 2, '0')
        || 'NWBK' || a.sort_code_digits || a.account_number,
    'GBP', 'open', date '2020-01-01' + (a.account_id %% 1000)::int,
    null, timestamptz '2024-03-01 00:00:00+00', timestamptz '2024-03-01 00:00:00+00'
from (
    select g as account_id,
           lpad((600000 + g %% 1000)::text, 6, '0') as sort_code_digits,
           lpad((10000000 + g)::text, 8, '0') as account_number
    from generate_series(1, %(accounts)s) as g
) as a
"""


def build_source(url: str, rows: int, on_progress: Callable[[int], None] | None = None) -> None:
    """Apply corebank.sql and generate `rows` valid transactions (GBP, booked, positive)."""
    accounts = max(1, rows // ROWS_PER_ACCOUNT)
    with psycopg.connect(url, autocommit=True) as conn:
        # A throwaway source: no need to wait for the WAL on every chunk's commit.
        conn.execute("set synchronous_commit = off")
        conn.execute(CORE_BANK_SQL.read_text())
        conn.execute(ACCOUNTS_INSERT, {"accounts": accounts})
        # Chunks, so that the progress bar moves; each is one statement and one commit.
        for first in range(1, rows + 1, BUILD_CHUNK_ROWS):
            last = min(rows, first + BUILD_CHUNK_ROWS - 1)
            conn.execute(
                TRANSACTIONS_INSERT,
                {
                    "first": first,
                    "last": last,
                    "accounts": accounts,
                    "rows": rows,
                    "spread": SPREAD_SECONDS,
                },
            )
            if on_progress:
                on_progress(last - first + 1)
        # Set hint bits and the visibility map now, so that the first method to read the table
        # does not pay for writing them back and the others not.
        conn.execute("vacuum (analyze) transactions, accounts")


def checkpoint(server: PgParams) -> None:
    """Flush dirty buffers, so that one method's writes are not paid for during the next one."""
    try:
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute("checkpoint")
    except psycopg.errors.InsufficientPrivilege:
        pass  # a managed server may not allow it; the numbers are only a little noisier


# --------------------------------------------------------------------------------------------
# The methods (run inside a worker process)


def load_ours(source_url: str, target_url: str, detect_deletes: bool) -> int:
    from flows.extract.postgres import extract_table

    # As the flow connects (flows/pipeline.py): neither connection autocommits; extract_table
    # opens the source's snapshot itself and commits the warehouse in one transaction.
    with psycopg.connect(source_url) as source, psycopg.connect(target_url) as warehouse:
        result = extract_table(
            source, warehouse, ENTITY, RECORD_SOURCE, detect_deletes=detect_deletes
        )
    return result.rows_loaded


def load_pipe(source_url: str, target_url: str) -> int:
    with psycopg.connect(source_url) as source, psycopg.connect(target_url) as target:
        columns = source.execute(
            """
            select a.attname, format_type(a.atttypid, a.atttypmod)
            from pg_attribute a
            where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
            order by a.attnum
            """,
            (ENTITY,),
        ).fetchall()
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(type_)) for name, type_ in columns
        )
        target.execute(sql.SQL("create table {} ({})").format(sql.Identifier(ENTITY), definition))
        copy_out = sql.SQL("copy (select * from {}) to stdout").format(sql.Identifier(ENTITY))
        copy_in = sql.SQL("copy {} from stdin").format(sql.Identifier(ENTITY))
        with source.cursor() as out_cur, target.cursor() as in_cur:
            with out_cur.copy(copy_out) as reader, in_cur.copy(copy_in) as writer:
                for block in reader:
                    writer.write(block)
            rows = in_cur.rowcount
        target.commit()
    return rows


def load_pandas(source_url: str, target_url: str, limit: int | None) -> int:
    import pandas as pd
    from sqlalchemy import create_engine

    source = create_engine(sqlalchemy_url(source_url))
    target = create_engine(sqlalchemy_url(target_url))
    try:
        query = f"select * from {ENTITY}"
        if limit is not None:
            query += f" order by transaction_id limit {int(limit)}"
        frame = pd.read_sql(query, source)
        frame.to_sql(ENTITY, target, if_exists="replace", index=False, chunksize=PANDAS_CHUNKSIZE)
        return len(frame)
    finally:
        source.dispose()
        target.dispose()


def sqlalchemy_url(libpq_url: str) -> str:
    """postgresql://... as SQLAlchemy's psycopg2 dialect wants it (host= query kept)."""
    return "postgresql+psycopg2://" + libpq_url.split("://", 1)[1]


def count_target_rows(method: str, target_url: str) -> int:
    table = sql.SQL("raw.{}") if method.startswith("ours") else sql.SQL("public.{}")
    query = sql.SQL("select count(*) from {}").format(table.format(sql.Identifier(ENTITY)))
    if method.startswith("ours"):
        query = sql.SQL("{} where not _is_deleted").format(query)
    with psycopg.connect(target_url) as conn:
        return conn.execute(query).fetchone()[0]


def run_worker(method: str, source_url: str, target_url: str, limit: int | None) -> Measurement:
    """Load with one method in this process and measure it."""
    import resource

    # Import everything the method needs before the clock starts: only the load is timed.
    if method.startswith("ours"):
        import flows.extract.postgres  # noqa: F401

        # extract_table imports its data-contract machinery (Great Expectations) lazily.
        for module in ("flows.quality.contracts", "flows.quality.validate"):
            with suppress(ModuleNotFoundError):
                importlib.import_module(module)
    elif method == "pandas":
        import pandas  # noqa: F401
        import sqlalchemy  # noqa: F401

    started = time.perf_counter()
    if method == "ours":
        rows = load_ours(source_url, target_url, detect_deletes=False)
    elif method == "ours_deletes":
        rows = load_ours(source_url, target_url, detect_deletes=True)
    elif method == "pipe":
        rows = load_pipe(source_url, target_url)
    elif method == "pandas":
        rows = load_pandas(source_url, target_url, limit)
    else:
        raise ValueError(f"unknown method {method!r}")
    seconds = time.perf_counter() - started
    # ru_maxrss is in KB on Linux: the whole process's peak, imports included.
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return Measurement(method, rows, count_target_rows(method, target_url), seconds, peak_kb)


def measure_in_subprocess(
    method: str, source_url: str, target_url: str, limit: int | None = None
) -> Measurement:
    """Run one method in a fresh interpreter, so that its peak memory is its own."""
    command = [sys.executable, "-m", "bench.extraction", "--worker", method]
    command += ["--source-url", source_url, "--target-url", target_url]
    if limit is not None:
        command += ["--limit", str(limit)]
    with tempfile.TemporaryDirectory(prefix="bankdw-bench-data-") as scratch:
        # extract_table keeps its GX context under the settings' data folder: a scratch one, so
        # that the benchmark writes nothing under .warehouse.
        env = os.environ | {"WAREHOUSE_DIR": scratch}
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmark worker {method} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    # The report is the last line: anything a library printed comes before it.
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Measurement(**report)


# --------------------------------------------------------------------------------------------
# Orchestration


@contextmanager
def benchmark_server() -> Iterator[PgParams]:
    """WAREHOUSE_URL's server, else a dedicated embedded one in a temporary folder (removed)."""
    given = os.environ.get("WAREHOUSE_URL")
    if given:
        yield parse_url(given)
        return
    import logging
    import warnings

    # platformdirs warns when XDG_RUNTIME_DIR is unset (pgserver's lock file, at import): harmless.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bankdw-bench-") as folder:
        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            socket_dir = str(server.get_postmaster_info().socket_dir)
            yield PgParams(socket_dir, 5432, "postgres", "", "postgres")
        finally:
            server.cleanup()


def run_benchmark(
    server: PgParams,
    rows: int,
    methods: Sequence[str] = METHODS,
    pandas_max_rows: int | None = DEFAULT_PANDAS_MAX_ROWS,
    prefix: str = "bench",
    on_build_progress: Callable[[int], None] | None = None,
    on_method: Callable[[str], None] | None = None,
    keep_databases: bool = False,
) -> Run:
    """Build a source of `rows` transactions and measure each method against it."""
    names = database_names(prefix)
    source_url = recreate_database(server, names["source"])
    build_source(source_url, rows, on_build_progress)
    measurements = []
    try:
        for method in methods:
            if on_method:
                on_method(method)
            target_url = recreate_database(server, names[method])
            checkpoint(server)
            limit = None
            if method == "pandas" and pandas_max_rows is not None and rows > pandas_max_rows:
                limit = pandas_max_rows
            measurements.append(measure_in_subprocess(method, source_url, target_url, limit))
            if not keep_databases:
                drop_database(server, names[method])
    finally:
        if not keep_databases:
            for method in methods:
                drop_database(server, names[method])
            drop_database(server, names["source"])
    return Run(rows, measurements)


# --------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class TargetCheck:
    name: str
    met: bool | None  # None: not measured
    detail: str


def check_targets(runs: Sequence[Run]) -> list[TargetCheck]:
    """The issue's targets, per N; memory flatness across the Ns measured."""
    checks = []
    for run in runs:
        ours, pipe, pandas = run.get("ours"), run.get("pipe"), run.get("pandas")
        n = f"{run.rows:,} rows"
        if ours and pipe:
            ratio = ours.rows_per_second / pipe.rows_per_second
            checks.append(
                TargetCheck(
                    f"ours >= {TARGET_VS_PIPE}x bare pipe ({n})",
                    ratio >= TARGET_VS_PIPE,
                    f"{ratio:.2f}x ({ours.rows_per_second:,.0f} vs "
                    f"{pipe.rows_per_second:,.0f} rows/s)",
                )
            )
        if ours and pandas:
            ratio = ours.rows_per_second / pandas.rows_per_second
            checks.append(
                TargetCheck(
                    f"ours >= {TARGET_VS_PANDAS:.0f}x pandas ({n})",
                    ratio >= TARGET_VS_PANDAS,
                    f"{ratio:.1f}x ({ours.rows_per_second:,.0f} vs "
                    f"{pandas.rows_per_second:,.0f} rows/s, pandas on {pandas.rows:,} rows)",
                )
            )
        for method in ("ours", "ours_deletes"):
            m = run.get(method)
            if m:
                checks.append(
                    TargetCheck(
                        f"{method} peak RSS < {TARGET_PEAK_MB:.0f} MB ({n})",
                        m.peak_rss_mb < TARGET_PEAK_MB,
                        f"{m.peak_rss_mb:.0f} MB",
                    )
                )
    with_ours = [r for r in runs if r.get("ours")]
    if len(with_ours) >= 2:
        low = min(with_ours, key=lambda r: r.rows)
        high = max(with_ours, key=lambda r: r.rows)
        low_mb, high_mb = low.get("ours").peak_rss_mb, high.get("ours").peak_rss_mb
        checks.append(
            TargetCheck(
                f"ours peak RSS flat from {low.rows:,} to {high.rows:,} rows",
                high_mb <= low_mb * (1 + FLAT_TOLERANCE),
                f"{low_mb:.0f} MB -> {high_mb:.0f} MB (within {FLAT_TOLERANCE:.0%} counts as flat)",
            )
        )
    else:
        checks.append(
            TargetCheck(
                "ours peak RSS flat from 1M to 5M rows",
                None,
                "needs two sizes, e.g. --rows 1000000 --rows 5000000 --methods ours",
            )
        )
    return checks


def table_rows(runs: Sequence[Run]) -> list[list[str]]:
    """method, rows, seconds, rows/s, x bare pipe, peak RSS MB: as text, one list per line."""
    lines = []
    for run in runs:
        pipe = run.get("pipe")
        for m in run.measurements:
            vs_pipe = f"{m.rows_per_second / pipe.rows_per_second:.2f}" if pipe else "-"
            lines.append(
                [
                    METHOD_LABELS[m.method],
                    f"{m.rows:,}",
                    f"{m.seconds:.2f}",
                    f"{m.rows_per_second:,.0f}",
                    vs_pipe,
                    f"{m.peak_rss_mb:.0f}",
                ]
            )
    return lines


HEADERS = ["method", "rows", "seconds", "rows/s", "× bare pipe", "peak RSS MB"]


def markdown_table(runs: Sequence[Run]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + " --- |" * len(HEADERS)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(runs)]
    return "\n".join(lines)


def print_report(runs: Sequence[Run], console: Console) -> list[TargetCheck]:
    from rich.table import Table

    table = Table(title="Extraction benchmark: transactions, source and warehouse on one server")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "method" else "right")
    for cells in table_rows(runs):
        table.add_row(*cells)
    console.print(table)
    for run in runs:
        pandas = run.get("pandas")
        if pandas and pandas.rows < run.rows:
            console.print(
                f"[yellow]pandas measured on the first {pandas.rows:,} of {run.rows:,} rows[/] "
                "(read_sql holds the whole table in memory; rows/s is comparable)."
            )
    console.print(
        "ours: flows.extract.postgres.extract_table into raw.transactions of a fresh warehouse. "
        "bare COPY pipe: psycopg 3 COPY TO STDOUT -> COPY FROM STDIN into a plain table. "
        "pandas: read_sql('select * from transactions') over a SQLAlchemy engine (psycopg2), "
        f"then to_sql(if_exists='replace', index=False, chunksize={PANDAS_CHUNKSIZE}), "
        "default insert method. Peak RSS: the client process, imports included "
        "(the server's memory is not counted)."
    )
    checks = check_targets(runs)
    for check in checks:
        verdict = {True: "[green]met[/]", False: "[red]not met[/]", None: "[dim]not measured[/]"}
        console.print(f"{verdict[check.met]}  {check.name}: {check.detail}")
    console.print("\nMarkdown (for the README):\n")
    console.print(markdown_table(runs), markup=False, highlight=False, soft_wrap=True)
    return checks


# --------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bankdw bench extraction", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rows",
        type=int,
        action="append",
        help=f"transactions in the source; repeat for several sizes (default {DEFAULT_ROWS:,})",
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, from {', '.join(METHODS)} (default: all)",
    )
    parser.add_argument(
        "--pandas-max-rows",
        type=int,
        default=DEFAULT_PANDAS_MAX_ROWS,
        help="measure pandas on at most this many rows (0: no limit)",
    )
    # Internal: one method in this process, reported as one JSON line.
    parser.add_argument("--worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--source-url", help=argparse.SUPPRESS)
    parser.add_argument("--target-url", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown method(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        measurement = run_worker(args.worker, args.source_url, args.target_url, args.limit)
        print(json.dumps(asdict(measurement)))
        return 0

    from rich.console import Console

    console = Console()
    started = time.perf_counter()
    with benchmark_server() as server:
        runs = [
            run_with_progress(server, rows, args.methods, args.pandas_max_rows or None, console)
            for rows in args.rows or [DEFAULT_ROWS]
        ]
    print_report(runs, console)
    console.print(f"\nwall time: {time.perf_counter() - started:.0f} s")
    # A benchmark reports; a target not met is in the output, not in the exit code.
    return 0


def run_with_progress(
    server: PgParams,
    rows: int,
    methods: Sequence[str],
    pandas_max_rows: int | None,
    console: Console,
) -> Run:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        build = progress.add_task(f"building source: {rows:,} transactions", total=rows)
        measure = progress.add_task("measuring", total=len(methods), start=False)

        def on_method(method: str) -> None:
            progress.start_task(measure)
            done = methods.index(method)
            progress.update(measure, completed=done, description=f"measuring {method}")

        run = run_benchmark(
            server,
            rows,
            methods,
            pandas_max_rows=pandas_max_rows,
            on_build_progress=lambda n: progress.advance(build, n),
            on_method=on_method,
        )
        progress.update(measure, completed=len(methods), description="measured")
    return run


if __name__ == "__main__":
    sys.exit(main())
