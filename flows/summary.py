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
        "interactions",
        "opportunities",
        "orders",
    ),
    "silver": (
        "products",
        "customers",
        "accounts",
        "account_standing",
        "account_holders",
        "account_balances",
        "transactions",
        "interactions",
        "opportunities",
        "orders",
    ),
    "vault": (
        "hub_customer",
        "hub_account",
        "hub_transaction",
        "hub_product",
        "hub_interaction",
        "hub_opportunity",
        "hub_order",
        "link_customer_account",
        "link_account_transaction",
        "link_account_product",
        "link_customer_interaction",
        "link_customer_opportunity",
        "link_customer_order",
        "link_order_product",
        "link_opportunity_product",
        "sat_customer_details",
        "sat_customer_personal",
        "sat_account_details",
        "sat_account_ledger",
        "sat_transaction_details",
        "sat_transaction_counterparty",
        "sat_product_details",
        "sat_interaction_details",
        "sat_opportunity_details",
        "sat_order_details",
        "eff_sat_customer_account",
        "sat_customer_deleted",
        "sat_account_deleted",
        "sat_product_deleted",
        "sat_transaction_deleted",
        "pit_customer",
        "pit_account",
    ),
    "gold": (
        "dim_customer",
        "dim_account",
        "dim_product",
        "dim_date",
        "fact_transactions",
        "fact_account_daily_balance",
        "fact_orders",
        "account_activity",
        "customer_summary",
        "customer_360",
        "order_metrics",
        "aml_alerts",
        "dq_scorecard",
    ),
}

# Silver tables with per-version validity: their invalid current versions are reported.
VALIDATED_SILVER = ("customers", "accounts", "account_holders", "transactions")
# Silver tables whose rules can also warn (dq_warnings): the version is valid and loads, but a link
# it carries does not (a missing product, for one). Reported per run, like held-back versions.
WARNING_SILVER = ("accounts", "opportunities", "orders")


@dataclass
class RunSummary:
    steps: list[tuple[str, float, str]] = field(default_factory=list)  # (step, seconds, detail)
    layer_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    estimated_rows: set[str] = field(default_factory=set)  # "layer.table" counted by estimate
    invalid_rows: dict[str, int] = field(default_factory=dict)
    invalid_by_rule: dict[str, int] = field(default_factory=dict)
    warnings_by_rule: dict[str, int] = field(default_factory=dict)  # 'table: rule' -> versions
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


def count_warnings(
    conn: psycopg.Connection, since: datetime | None, until: datetime
) -> dict[str, int]:
    """Versions published in (since, until] that silver loaded with a warning, per 'table: rule'
    (e.g. 'orders: product_missing': the order is in the vault, its link to a product is not)."""
    per_rule: dict[str, int] = {}
    window = {"since": since or datetime.min.replace(tzinfo=UTC), "until": until}
    for table in WARNING_SILVER:
        if not _table_exists(conn, "silver", table):
            continue
        rows = conn.execute(
            sql.SQL(
                "select rule, count(*) from {}.{}, unnest(dq_warnings) as rule "
                "where load_ts > %(since)s and load_ts <= %(until)s and is_valid "
                "group by rule order by rule"
            ).format(sql.Identifier("silver"), sql.Identifier(table)),
            window,
        ).fetchall()
        per_rule.update({f"{table}: {rule}": n for rule, n in rows})
    return per_rule
