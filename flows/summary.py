"""What a run reports: duration per step, rows per layer, invalid rows held back in silver."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg import sql

# Tables counted per layer in the run summary, in the order a reader follows the data.
LAYER_TABLES: dict[str, tuple[str, ...]] = {
    "raw": (
        "products",
        "customers",
        "accounts",
        "account_holders",
        "account_balances",
        "transactions",
    ),
    "silver": (
        "products",
        "customers",
        "accounts",
        "account_standing",
        "account_holders",
        "transactions",
    ),
    "vault": (
        "hub_customer",
        "hub_account",
        "hub_transaction",
        "link_customer_account",
        "link_account_transaction",
        "sat_customer_details",
        "sat_account_details",
        "sat_transaction_details",
        "sat_transaction_deleted",
    ),
    "gold": ("dim_customer", "dim_account", "fact_transactions"),
}

# Silver tables with per-version validity: their invalid current versions are reported.
VALIDATED_SILVER = ("customers", "accounts", "account_holders", "transactions")


@dataclass
class RunSummary:
    steps: list[tuple[str, float, str]] = field(default_factory=list)  # (step, seconds, detail)
    layer_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    estimated_rows: set[str] = field(default_factory=set)  # "layer.table" counted by estimate
    invalid_rows: dict[str, int] = field(default_factory=dict)
    invalid_by_rule: dict[str, int] = field(default_factory=dict)
    batches: list = field(default_factory=list)  # BatchResult per source table
    drift: list[str] = field(default_factory=list)  # schema changes seen by this run
    resent: list[str] = field(default_factory=list)  # feed files re-sent with new content
    repeated: list[str] = field(default_factory=list)  # feed files whose bytes were loaded before
    ignored: list[str] = field(default_factory=list)  # files in the landing folder not loaded
    feeds_off: str | None = None  # why no feed file was looked for


def _table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (f"{schema}.{table}",)).fetchone()[0]


# Above this many rows (the planner's estimate) a table's size is reported as estimated: counting
# it would make every run's summary cost grow with the history.
EXACT_COUNT_BELOW = 200_000


def count_layer_rows(conn: psycopg.Connection) -> tuple[dict[str, dict[str, int]], set[str]]:
    """Rows of every table of every layer that exists (missing tables are left out), and the
    names ("layer.table") whose count is the planner's estimate (fresh: models ANALYZE)."""
    counts: dict[str, dict[str, int]] = {}
    estimated: set[str] = set()
    for layer, tables in LAYER_TABLES.items():
        for table in tables:
            if not _table_exists(conn, layer, table):
                continue
            name = sql.Identifier(layer, table)
            plan = conn.execute(
                sql.SQL("explain (format json) select * from {}").format(name)
            ).fetchone()[0]
            rows = int(plan[0]["Plan"]["Plan Rows"])
            if rows >= EXACT_COUNT_BELOW:
                estimated.add(f"{layer}.{table}")
            else:
                rows = conn.execute(sql.SQL("select count(*) from {}").format(name)).fetchone()[0]
            counts.setdefault(layer, {})[table] = rows
    return counts, estimated


def count_invalid_rows(
    conn: psycopg.Connection, since: datetime | None, until: datetime
) -> tuple[dict[str, int], dict[str, int]]:
    """Versions silver held back among those published in (since, until] (one run's), per table
    and per 'table: rule'. Indexed by load time: the cost follows the run, not the history."""
    per_table: dict[str, int] = {}
    per_rule: dict[str, int] = {}
    for table in VALIDATED_SILVER:
        if not _table_exists(conn, "silver", table):
            continue
        window = {"since": since or datetime.min.replace(tzinfo=UTC), "until": until}
        rows = conn.execute(
            sql.SQL(
                "select rule, count(*) from {}.{}, unnest(dq_issues) as rule "
                "where load_ts > %(since)s and load_ts <= %(until)s and not is_valid "
                "group by rule order by rule"
            ).format(sql.Identifier("silver"), sql.Identifier(table)),
            window,
        ).fetchall()
        per_rule.update({f"{table}: {rule}": n for rule, n in rows})
        per_table[table] = conn.execute(
            sql.SQL(
                "select count(*) from {}.{} "
                "where load_ts > %(since)s and load_ts <= %(until)s and not is_valid"
            ).format(sql.Identifier("silver"), sql.Identifier(table)),
            window,
        ).fetchone()[0]
    return per_table, per_rule
