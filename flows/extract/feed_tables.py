"""The feeds' raw tables: their typed columns (from the contracts) and file metadata, and their
creation before any file arrives. Light on imports: the transformation creates the tables
before every run, and a run with nothing new must stay cheap."""

from __future__ import annotations

import psycopg

from flows import load
from flows.load import Column

FILE_METADATA = (
    Column("_source_file", "text"),
    Column("_source_line", "integer"),
    Column("_extras", "jsonb"),
)
PG_TYPE_OF_FAMILY = {
    "integer": "bigint",
    "numeric": "numeric",
    "text": "text",
    "timestamp": "timestamp with time zone",
    "date": "date",
    "boolean": "boolean",
}


def raw_columns(feed: str) -> list[Column]:
    """The feed's typed raw columns: every column its contract types, required ones first."""
    from flows.quality.contracts import contract_for

    typed = contract_for(feed).typed
    return [Column(name, PG_TYPE_OF_FAMILY[family]) for name, family in typed.items()]


def ensure_feed_tables(conn: psycopg.Connection, record_source: str) -> None:
    """Create every feed's raw and quarantine tables that do not exist yet.

    Silver reads every feed's raw table: a warehouse that has not received a file of some feed
    (a new warehouse, a bank without CRM files) still has its empty table. Each feed is created
    under its load lock (load.lock_entity), so a first file loading meanwhile never races it.
    """
    from flows.extract.feed_file import FEEDS
    from flows.quality.quarantine import ensure_quarantine_table

    for feed in FEEDS:
        if conn.execute("select to_regclass(%s) is not null", (f"raw.{feed}",)).fetchone()[0]:
            continue
        with conn.transaction():
            load.lock_entity(conn, record_source, feed)
            load.ensure_raw_table(conn, feed, raw_columns(feed) + list(FILE_METADATA))
            ensure_quarantine_table(conn, feed)
