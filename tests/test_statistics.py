"""A model's statistics are refreshed when its table outgrew them, even when the statistics views
have not yet heard of the rows (a backend reports its counts at most once a second)."""

from __future__ import annotations

import time

import psycopg

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
