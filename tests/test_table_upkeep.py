"""Upkeep of model tables (macros/maintenance.py, ops.sql): statistics refreshed when a table
outgrew them, and indexes asserted on every run without waiting for autovacuum."""

from __future__ import annotations

import time

import psycopg
import pytest

from flows.load import apply_ops_schema


def _planner_rows(conn: psycopg.Connection, table: str) -> float:
    return conn.execute(
        "select reltuples from pg_class where oid = %s::regclass", (table,)
    ).fetchone()[0]


def _wait_for_reported_rows(conn: psycopg.Connection, table: str, rows: int) -> None:
    deadline = time.monotonic() + 30
    query = "select n_live_tup from pg_stat_user_tables where relid = %s::regclass"
    while conn.execute(query, (table,)).fetchone()[0] < rows:
        assert time.monotonic() < deadline, f"{table}'s counts never reached the statistics views"
        time.sleep(0.1)


def test_a_table_filled_right_after_its_empty_analyze_is_analyzed_again(new_database) -> None:
    url = new_database("stats")
    with psycopg.connect(url, autocommit=True) as conn:
        apply_ops_schema(conn)
        conn.execute("create table public.loaded (id int, payload text)")
        # A model's table as a plan creates it: analyzed while still empty.
        assert conn.execute("select ops.analyze_if_stale('public.loaded')").fetchone()[0]
        assert _planner_rows(conn, "public.loaded") == 0
        conn.execute(
            "insert into public.loaded select g, md5(g::text) from generate_series(1, 20000) g"
        )
        # Straight away, in the same session, as the model's post-statement runs.
        assert conn.execute("select ops.analyze_if_stale('public.loaded')").fetchone()[0]
        assert _planner_rows(conn, "public.loaded") == 20000
    # Once the counts have reached the statistics views (a session reports them as it ends), the
    # fresh statistics stay: a small write does not pay another sample.
    with psycopg.connect(url, autocommit=True) as conn:
        _wait_for_reported_rows(conn, "public.loaded", 20000)
        conn.execute("select ops.analyze_if_stale('public.loaded')")
        conn.execute("insert into public.loaded values (0, 'one more')")
    with psycopg.connect(url, autocommit=True) as conn:
        assert not conn.execute("select ops.analyze_if_stale('public.loaded')").fetchone()[0]


def test_a_run_does_not_wait_for_autovacuum_to_check_its_indexes(new_database) -> None:
    """Each run re-asserts a model's indexes; with autovacuum working on the table (its lock is
    SHARE UPDATE EXCLUSIVE), that must cost a catalog lookup, not a wait."""
    from types import SimpleNamespace

    from sqlglot import exp

    from macros.maintenance import _index

    url = new_database("indexes")
    with (
        psycopg.connect(url, autocommit=True) as conn,
        psycopg.connect(url, autocommit=True) as vacuum,
    ):
        apply_ops_schema(conn)
        conn.execute("create schema model_tables")
        conn.execute("create table model_tables.facts (id int, loaded_at timestamptz)")
        table = '"model_tables"."facts"'
        columns = (exp.column("loaded_at"),)
        creating = SimpleNamespace(runtime_stage="creating", this_model=table)
        evaluating = SimpleNamespace(runtime_stage="evaluating", this_model=table)
        conn.execute(_index(creating, columns, unique=False))

        vacuum.execute("begin")
        vacuum.execute("lock table model_tables.facts in share update exclusive mode")
        conn.execute("set lock_timeout = '500ms'")
        # What `create index if not exists` does while autovacuum holds the table: it waits.
        with pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute(_index(creating, columns, unique=False))
        # What a run's post-statement does: the index is there, nothing to wait for.
        assert conn.execute(_index(evaluating, columns, unique=False)).fetchone()[0] is False
        vacuum.execute("rollback")

        # And a missing index is still created by a run.
        other = (exp.column("id"),)
        assert conn.execute(_index(evaluating, other, unique=False)).fetchone()[0] is True
        indexes = conn.execute(
            "select count(*) from pg_indexes where schemaname = 'model_tables'"
        ).fetchone()[0]
        assert indexes == 2
