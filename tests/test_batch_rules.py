"""A batch that repeats a key never reaches raw: every copy is quarantined (`key_duplicated`), the
pipeline keeps running, and the documented recovery paths clear the quarantine: identical copies
collapse into one at replay; conflicting ones wait for the source's next version."""

from __future__ import annotations

import csv
import io

import psycopg
from typer.testing import CliRunner

from flows.cli import app
from flows.extract.feeds import extract_feeds_flow
from flows.pipeline import run_flow
from flows.quality.replay import replay
from flows.settings import get_settings
from flows.simulate import simulate


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_a_key_sent_twice_in_one_batch_is_quarantined_and_the_pipeline_keeps_running(
    bank_factory,
):
    bank = bank_factory("dupkeys")
    wh, src = bank.warehouse_url, bank.source_url
    simulate(src, 2, scale=20, seed=21, bad_rate=0.0)
    run_flow()
    with psycopg.connect(src) as conn:
        # A source table without a primary key: one customer arrives twice, identical, and another
        # twice with different e-mails, all in the next batch.
        conn.execute("alter table customers drop constraint customers_pkey")
        conn.execute(
            "update customers set updated_at = '2026-02-01 10:00+00' where customer_id in (3, 4)"
        )
        conn.execute("insert into customers select * from customers where customer_id = 3")
        conn.execute(
            "insert into customers select customer_id, first_name, last_name, 'other@example.com', "
            "phone, date_of_birth, address_line1, city, postcode, country, created_at, updated_at "
            "from customers where customer_id = 4"
        )

    for _ in range(2):  # the run after the bad batch is not stuck either
        run_flow()

    assert (
        rows(
            wh,
            "select (payload ->> 'customer_id')::int, rules from quarantine.customers "
            "where resolution is null order by 1",
        )
        == [(3, ["key_duplicated"])] * 2 + [(4, ["key_duplicated"])] * 2
    )
    assert rows(
        wh,
        "select count(*) from raw.customers "
        "where customer_id in (3, 4) and updated_at > '2026-01-31'",
    ) == [(0,)]

    # Recovery 1: replay. The identical copies collapse into one version; the conflicting pair
    # stays pending (which e-mail is right is the source's call).
    with psycopg.connect(wh) as conn:
        result = replay(conn, "customers")
    assert (result.replayed, result.superseded, result.still_failing) == (1, 1, 2)

    # Recovery 2: the source fixes customer 4 and stamps a new version; it loads, and the next
    # replay marks the pending copies superseded.
    with psycopg.connect(src) as conn:
        conn.execute("delete from customers where customer_id = 4 and email = 'other@example.com'")
        conn.execute(
            "update customers set updated_at = '2026-02-02 10:00+00' where customer_id = 4"
        )
    run_flow()
    with psycopg.connect(wh) as conn:
        result = replay(conn, "customers")
    assert (result.replayed, result.superseded, result.still_failing) == (0, 2, 0)
    run_flow()
    assert rows(
        wh,
        "select customer_id, updated_at::date::text, is_valid from silver.customers "
        "where updated_at >= '2026-02-01' order by 1",
    ) == [(3, "2026-02-01", True), (4, "2026-02-02", True)]


def test_an_order_repeated_in_a_feed_file_is_quarantined_every_copy(
    bank_factory, tmp_path, monkeypatch
):
    bank = bank_factory("dupfeed")
    landing = tmp_path / "landing"
    monkeypatch.setenv("LANDING_DIR", str(landing))
    from flows.settings import reset_settings

    reset_settings()
    header = ["order_id", "customer_id", "product_id", "channel", "status", "amount", "updated_at"]
    order = ["7", "10", "CUR-STD", "web", "placed", "25.00", "2026-01-03T10:00:00Z"]
    other = ["8", "10", "CUR-STD", "web", "placed", "25.00", "2026-01-03T10:00:00Z"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([header, order, order, order, other])
    (landing / "orders").mkdir(parents=True)
    (landing / "orders" / "orders_2026-01-03.csv").write_text(buffer.getvalue())

    (batch,) = extract_feeds_flow("landing").batches

    assert (batch.rows_in, batch.rows_loaded, batch.rows_quarantined) == (4, 1, 3)
    assert rows(
        bank.warehouse_url,
        "select source_line, rules from quarantine.orders order by source_line",
    ) == [(2, ["key_duplicated"]), (3, ["key_duplicated"]), (4, ["key_duplicated"])]
    assert get_settings().landing_path == landing
    result = CliRunner().invoke(app, ["quarantine", "list", "--entity", "orders"])
    assert result.exit_code == 0 and "key_duplicated" in result.output
