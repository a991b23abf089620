"""Helpers for the vault's scenario tests: raw batches written straight into raw (as an extraction
would leave them, contract passed), runs of the transformation (publish, plan, run), and rows as
readable tables.

A scenario reads as two tables: the raw batches given, by run, and exactly the vault rows
expected. Load times are written as the run that published them (`R2`), or `R2+1us` for the
second row of one key stored by that run (rows of one key stored together keep their order a
microsecond apart); timestamps are UTC, to the minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from flows import load
from flows.extract.feed_tables import ensure_feed_tables
from flows.extract.streaming import pipe_copy
from flows.load import Column
from flows.quality.quarantine import ensure_quarantine_table
from flows.simulate.generator import gb_iban

# The core bank's tables as raw mirrors them (sql/source/corebank.sql; types as Postgres names
# them), so that a scenario needs no source database.
CORE_COLUMNS: dict[str, list[Column]] = {
    entity: [Column(*c.split(":")) for c in columns.split()]
    for entity, columns in {
        "products": "product_id:text name:text category:text interest_rate:numeric(6,4) "
        "created_at:timestamptz updated_at:timestamptz",
        "customers": "customer_id:bigint first_name:text last_name:text email:text phone:text "
        "date_of_birth:date address_line1:text city:text postcode:text country:character(2) "
        "created_at:timestamptz updated_at:timestamptz",
        "accounts": "account_id:bigint product_id:text sort_code:text account_number:text "
        "iban:text currency:character(3) status:text opened_on:date closed_on:date "
        "created_at:timestamptz updated_at:timestamptz",
        "account_holders": "account_id:bigint customer_id:bigint holder_role:text valid_from:date "
        "valid_to:date created_at:timestamptz updated_at:timestamptz",
        "transactions": "transaction_id:bigint account_id:bigint reference:text "
        "transaction_type:text direction:text amount:numeric(14,2) currency:character(3) "
        "status:text transaction_date:date booking_date:date counterparty:text description:text "
        "created_at:timestamptz updated_at:timestamptz channel:text merchant_category:text "
        "counterparty_account_id:bigint counterparty_transaction_id:bigint booked_at:timestamptz",
        "account_balances": "account_id:bigint currency:character(3) opening_balance:numeric(14,2) "
        "balance:numeric(14,2) booked_transactions:bigint created_at:timestamptz "
        "updated_at:timestamptz",
    }.items()
}
KEYS = {
    "products": ("product_id",),
    "customers": ("customer_id",),
    "accounts": ("account_id",),
    "account_holders": ("account_id", "customer_id", "valid_from"),
    "transactions": ("transaction_id",),
    "account_balances": ("account_id",),
}
FEEDS = ("interactions", "opportunities", "orders")
CREATED = "2026-01-01 09:00+00"


def defaults(entity: str, row: dict[str, Any]) -> dict[str, Any]:
    """Plausible values for the columns a scenario leaves out: its tables show what matters."""
    if entity == "customers":
        return {
            "first_name": "Ann",
            "last_name": "Lee",
            "email": f"c{row['customer_id']}@example.com",
            "date_of_birth": "1980-01-01",
            "address_line1": "1 High Street",
            "city": "Leeds",
            "postcode": "LS1 1AA",
            "country": "GB",
            "created_at": CREATED,
        }
    if entity == "accounts":
        number = f"{int(row['account_id']) % 100_000_000:08d}"
        return {
            "product_id": "CUR-STD",
            "sort_code": "20-14-53",
            "account_number": number,
            "iban": gb_iban("20-14-53", number),
            "currency": "GBP",
            "status": "open",
            "opened_on": "2025-01-01",
            "created_at": CREATED,
        }
    if entity == "account_holders":
        return {"holder_role": "primary", "created_at": CREATED}
    if entity == "transactions":
        booked = row.get("status", "booked") == "booked"
        return {
            "reference": f"REF{row['transaction_id']}",
            "transaction_type": "deposit",
            "direction": "credit",
            "amount": "10.00",
            "currency": "GBP",
            "status": "booked",
            "transaction_date": "2026-01-02",
            "booking_date": "2026-01-02" if booked else None,
            "channel": "branch",
            "booked_at": "2026-01-02 09:00+00" if booked else None,
            "created_at": CREATED,
        }
    if entity == "products":
        return {"name": "Standard Current Account", "category": "current", "interest_rate": "0"}
    if entity == "interactions":
        return {"channel": "web", "interaction_type": "enquiry", "sentiment": "0.1"}
    if entity == "orders":
        return {"product_id": "CUR-STD", "channel": "web", "status": "placed", "amount": "100"}
    if entity == "opportunities":
        return {"product_code": "SAV-EASY", "stage": "prospect", "amount": "1000"}
    return {}


def parse_table(text: str) -> list[dict[str, str | None]]:
    """Rows of a `a | b` table (first line: the column names; `-` or nothing is NULL; a line
    starting with # is a comment)."""
    lines = [
        line
        for line in text.strip().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    header = [name.strip() for name in lines[0].split("|")]
    rows = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.split("|")]
        assert len(cells) == len(header), f"{len(cells)} cells for {header}: {line}"
        rows.append(
            {h: (None if c in ("", "-") else c) for h, c in zip(header, cells, strict=True)}
        )
    return rows


@dataclass
class ScenarioWarehouse:
    """A warehouse fed by hand: raw batches in, runs of the real transformation."""

    url: str
    runs: dict[str, datetime] = field(default_factory=dict)  # label -> publication time

    def create_raw_tables(self) -> None:
        """Raw, quarantine and ops tables as the first extraction would leave them."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            with conn.transaction():
                load.apply_ops_schema(conn)
                for entity, columns in CORE_COLUMNS.items():
                    load.ensure_raw_table(conn, entity, columns)
                    ensure_quarantine_table(conn, entity)
            ensure_feed_tables(conn, "crm")

    def batch(
        self,
        entity: str,
        rows: list[dict[str, Any]],
        *,
        deleted: bool = False,
        kind: str = "extract",
        source: str | None = None,
    ) -> int:
        """One committed batch of `rows` (given columns, the rest from `defaults`); `deleted`
        writes delete markers (keys only), as delete detection does."""
        source = source or ("crm" if entity in FEEDS else "corebank")
        with psycopg.connect(self.url) as conn, conn.transaction():
            batch_id = load.open_batch(conn, source, entity, None, kind=kind)
            for line, given in enumerate(rows, start=1):
                if deleted:
                    values = {k: given[k] for k in KEYS[entity]} | {"_is_deleted": True}
                else:
                    values = defaults(entity, given) | given
                if entity in FEEDS:
                    values |= {"_source_file": f"{entity}/scenario.jsonl", "_source_line": line}
                conn.execute(
                    sql.SQL("insert into {} ({}) values ({})").format(
                        sql.Identifier("raw", entity),
                        sql.SQL(", ").join(map(sql.Identifier, values)),
                        sql.SQL(", ").join(sql.Placeholder() * len(values)),
                    ),
                    list(values.values()),
                )
            counts = (0, 0, 0, len(rows)) if deleted else (len(rows), len(rows), 0, 0)
            load.close_batch(conn, batch_id, *counts, None)
        return batch_id

    def run(self, label: str, days_later: int = 1) -> datetime:
        """Publish what was loaded (a day after the last run: loads fall on different dates) and
        run the transformation: plan (the first time, every model) and run."""
        from flows import transform

        if self.runs:
            with psycopg.connect(self.url) as conn:
                conn.execute(
                    "update ops.transform_clock set execution_time = execution_time + %s",
                    (timedelta(days=days_later),),
                )
        with transform.Transformation(f"scenario {label}") as transformation:
            transformation.plan("prod")
            transformation.run("prod")
            published = transformation.execution_time - timedelta(milliseconds=1)
        self.runs[label] = published
        return published

    def query(
        self,
        query: str | sql.Composable,
        params: tuple | dict = (),  # type: ignore[type-arg]
    ) -> list[dict[str, str | None]]:
        """Rows as readable strings: load times as run labels, timestamps in UTC to the minute."""
        with psycopg.connect(self.url) as conn:
            conn.execute("set timezone = 'UTC'")
            cursor = conn.execute(query, params)
            names = [d.name for d in cursor.description]
            return [
                {n: self.readable(n, v) for n, v in zip(names, row, strict=True)}
                for row in cursor.fetchall()
            ]

    def readable(self, name: str, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, datetime) and (name == "load_ts" or name.endswith("_load_ts")):
            return self.run_label(value)
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, Decimal):
            return format(value.normalize(), "f")
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return ",".join(map(str, value)) or None
        return str(value)

    def run_label(self, moment: datetime) -> str:
        """`R2` for a run's publication time, `R2+1us` a microsecond after it."""
        for label, published in self.runs.items():
            offset = moment - published
            if offset == timedelta(0):
                return label
            if timedelta(0) < offset < timedelta(milliseconds=1):
                return f"{label}+{offset // timedelta(microseconds=1)}us"
        raise AssertionError(f"{moment} is no run's publication time: {self.runs}")

    def scalar(self, query: str, params: tuple = ()) -> Any:  # type: ignore[type-arg]
        with psycopg.connect(self.url) as conn:
            return conn.execute(query, params).fetchone()[0]


def rebuild_everything() -> None:
    """Restate every model that stores rows (views have none) from raw, in one pass."""
    from flows import transform

    with transform.Transformation("rebuild") as transformation:
        models = [
            model.name
            for model in transformation.context.models.values()
            if not model.kind.is_view and model.name.split(".")[-2] in ("silver", "vault", "gold")
        ]
        transformation.rebuild(models)


def copy_raw_history(source_url: str, target_url: str) -> dict[str, int]:
    """Give an empty database what the transformation reads of a warehouse, and nothing it built:
    every raw and quarantine table, row for row, `ops.batches` (each batch with its publication
    time, which decides the interval its rows belong to) and the transform clock (so that the
    copy runs at the source's execution time). Streamed between the two connections with COPY.
    Returns the rows copied per table.

    The tables are created as the loads create them (load.ensure_raw_table, the quarantine's
    DDL), with their indexes; the identity sequences continue after the copied ids, so the copy
    is a warehouse that could go on loading.
    """
    from flows.quality.quarantine import ensure_quarantine_table

    copied: dict[str, int] = {}
    with (
        psycopg.connect(source_url) as source,
        psycopg.connect(target_url) as target,
        target.transaction(),
    ):
        load.apply_ops_schema(target)
        tables = source.execute(
            "select table_schema, table_name from information_schema.tables "
            "where table_schema in ('raw', 'quarantine') and table_type = 'BASE TABLE' "
            "order by 1, 2"
        ).fetchall()
        for schema, table in tables:
            if schema == "raw":
                columns = load.table_columns(source, schema, table)
                load.ensure_raw_table(
                    target, table, [c for c in columns if c.name not in load.METADATA_COLUMNS]
                )
            else:
                ensure_quarantine_table(target, table)
        for schema, table in [("ops", "batches"), *tables]:
            # Named columns: a raw table that gained a column (schema drift) may list its
            # columns in another order than the one created here.
            listed = sql.SQL(", ").join(
                sql.Identifier(c.name) for c in load.table_columns(source, schema, table)
            )
            name = sql.Identifier(schema, table)
            copied[f"{schema}.{table}"] = pipe_copy(
                source,
                target,
                sql.SQL("copy {} ({}) to stdout").format(name, listed),
                sql.SQL("copy {} ({}) from stdin").format(name, listed),
            )
        for table, column in [("ops.batches", "batch_id")] + [
            (f"quarantine.{t}", "quarantine_id") for s, t in tables if s == "quarantine"
        ]:
            target.execute(
                sql.SQL(
                    "select setval(pg_get_serial_sequence(%s, %s), max({}), true) from {} "
                    "having max({}) is not null"
                ).format(
                    sql.Identifier(column),
                    sql.Identifier(*table.split(".")),
                    sql.Identifier(column),
                ),
                (table, column),
            )
        clock = source.execute(
            "select execution_time, published_to from ops.transform_clock"
        ).fetchone()
        target.execute(
            "insert into ops.transform_clock (execution_time, published_to) values (%s, %s)",
            clock,
        )
    return copied
