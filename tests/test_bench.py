"""The benchmark's machinery at a tiny N: every method loads every row, and the report says so.

No timing assertions: the benchmark measures, it is never a timed test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from rich.console import Console

from bench import extraction as bench
from flows.warehouse import PgParams

ROWS = 2_000


@pytest.fixture(scope="module", autouse=True)
def prefect_harness() -> Iterator[None]:
    """The benchmark never touches Prefect: skip the session's Prefect harness here."""
    yield


def test_every_method_loads_every_row_and_is_reported(pg_server: PgParams) -> None:
    prefix = f"bench_test_{os.getpid()}"
    names = bench.database_names(prefix)
    try:
        run = bench.run_benchmark(pg_server, ROWS, prefix=prefix, keep_databases=True)

        assert [m.method for m in run.measurements] == list(bench.METHODS)
        for m in run.measurements:
            assert (m.method, m.rows, m.rows_in_target) == (m.method, ROWS, ROWS)
            assert m.seconds > 0 and m.peak_rss_kb > 0
        # Counted here too, not only by the worker: raw for ours, a plain table for the others.
        for method, table in [
            ("ours", "raw.transactions"),
            ("ours_deletes", "raw.transactions"),
            ("pipe", "public.transactions"),
            ("pandas", "public.transactions"),
        ]:
            with psycopg.connect(pg_server.url(names[method])) as conn:
                assert conn.execute(f"select count(*) from {table}").fetchone()[0] == ROWS

        console = Console(record=True, width=200)
        checks = bench.print_report([run], console)
        text = console.export_text()
        markdown = bench.markdown_table([run])
        for m in run.measurements:
            label = bench.METHOD_LABELS[m.method]
            assert label in text and f"{m.rows_per_second:,.0f}" in text
            assert (
                f"| {label} | {ROWS:,} | {m.seconds:.2f} | {m.rows_per_second:,.0f} |" in markdown
            )
        assert len(markdown.splitlines()) == 2 + len(bench.METHODS)
        # One line per target, each with a verdict and its numbers.
        names_checked = [c.name for c in checks]
        assert any(n.startswith("ours >= 0.5x bare pipe") for n in names_checked)
        assert any(n.startswith("ours >= 10x pandas") for n in names_checked)
        assert any(n.startswith("ours peak RSS < 300 MB") for n in names_checked)
        for c in checks:
            assert f"{c.name}: {c.detail}" in text
    finally:
        for name in names.values():
            bench.drop_database(pg_server, name)
