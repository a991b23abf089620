"""Reads the source at the start of a simulated day and applies the day's changes (psycopg 3)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

import flows
from flows.simulate.rows import (
    AccountRef,
    CustomerRef,
    DayChanges,
    JointHolding,
    SimState,
    Snapshot,
    TransactionRow,
)

SCHEMA_PATH = Path(flows.__file__).parent.parent / "sql/source/corebank.sql"

STATE_COLUMNS = (
    "seed",
    "start_date",
    "days_simulated",
    "next_customer_id",
    "next_account_id",
    "next_transaction_id",
    "feed_state",
    "aml_state",
)


# The tables corebank.sql creates; sim_state marks a database the simulator made.
SOURCE_TABLES = (
    "products",
    "customers",
    "accounts",
    "account_holders",
    "account_balances",
    "transactions",
)


class ForeignDatabaseError(ValueError):
    """The database holds tables the simulator did not make: it is someone's data."""


def check_simulator_database(conn: psycopg.Connection) -> None:
    """Refuse a database that holds a table of the core bank's names but no sim_state.

    Creating the missing tables beside someone's `customers` and failing on the first insert
    would leave both a half-made demo and a touched database behind.
    """
    found = [
        table
        for table in (*SOURCE_TABLES, "sim_state")
        if conn.execute("select to_regclass(%s) is not null", (f"public.{table}",)).fetchone()[0]
    ]
    foreign = [t for t in found if t != "sim_state"]
    if foreign and "sim_state" not in found:
        info = conn.info
        raise ForeignDatabaseError(
            f"database {info.dbname} on host {info.host} already holds "
            f"{', '.join(foreign)}, not made by the simulator: it writes only to an empty "
            "database or one it made"
        )


def apply_schema(conn: psycopg.Connection) -> None:
    """Create the source tables if missing (the script only uses `if not exists` statements),
    in a database that is empty or the simulator's own (check_simulator_database).

    A source simulated before the ledger existed cannot be continued: its accounts have no
    ledger rows and its transactions no channel or booking instant to carry on from. Such a
    database is refused before anything is created in it.
    """
    check_simulator_database(conn)
    conn.execute(SCHEMA_PATH.read_text(encoding="utf-8"))
    has_ledger_columns = conn.execute(
        "select count(*) = 2 from information_schema.columns"
        " where table_schema = current_schema() and (table_name, column_name) in"
        " (('transactions', 'booked_at'), ('sim_state', 'aml_state'))"
    ).fetchone()[0]
    if not has_ledger_columns:
        conn.rollback()  # leave the old source as it was: no half-added ledger tables
        raise ValueError(
            "this source was simulated by an earlier bankdw, before account_balances, channels and "
            "AML cases: simulate into an empty database (`make clean` for the demo source)"
        )
    conn.commit()


def lock_state(conn: psycopg.Connection) -> SimState | None:
    """The simulator's position, locked until the day commits so two runs cannot interleave."""
    # The row lock alone does not cover an empty database, where there is no row yet.
    conn.execute("select pg_advisory_xact_lock(hashtext('bankdw.simulate'))")
    cols = sql.SQL(", ").join(map(sql.Identifier, STATE_COLUMNS))
    row = conn.execute(
        sql.SQL("select {} from sim_state where id = 1 for update").format(cols)
    ).fetchone()
    return SimState(*row) if row else None


def save_state(conn: psycopg.Connection, state: SimState) -> None:
    values = (
        state.seed,
        state.start_date,
        state.days_simulated,
        state.next_customer_id,
        state.next_account_id,
        state.next_transaction_id,
        Jsonb(state.feed_state),
        Jsonb(state.aml_state),
    )
    cols = sql.SQL(", ").join(map(sql.Identifier, STATE_COLUMNS))
    updates = sql.SQL(", ").join(
        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in STATE_COLUMNS
    )
    conn.execute(
        sql.SQL(
            "insert into sim_state (id, {cols}) values (1, {params}) "
            "on conflict (id) do update set {updates}"
        ).format(
            cols=cols,
            params=sql.SQL(", ").join(sql.Placeholder() * len(STATE_COLUMNS)),
            updates=updates,
        ),
        values,
    )


def read_snapshot(conn: psycopg.Connection, state: SimState) -> Snapshot:
    """What the generator needs from the source, every list in key order (determinism)."""
    customers = conn.execute(
        "select customer_id, first_name, last_name from customers order by customer_id"
    ).fetchall()
    # With its primary holder (who never changes), for transfers between customers.
    accounts = conn.execute(
        "select a.account_id, a.status, a.currency, a.opened_on, h.customer_id"
        " from accounts as a left join account_holders as h"
        " on h.account_id = a.account_id and h.holder_role = 'primary'"
        " order by a.account_id"
    ).fetchall()
    joint = conn.execute(
        "select account_id, customer_id, valid_from from account_holders"
        " where holder_role = 'joint' and valid_to is null"
        " order by account_id, customer_id, valid_from"
    ).fetchall()
    pending = select_rows(
        conn, TransactionRow, "transactions", "status = 'pending'", "transaction_id"
    )
    balances = conn.execute(
        "select account_id, balance from account_balances order by account_id"
    ).fetchall()
    return Snapshot(
        state=state,
        customers=[CustomerRef(*r) for r in customers],
        accounts=[AccountRef(*r) for r in accounts],
        joint_holdings=[JointHolding(*r) for r in joint],
        pending=pending,
        balances=dict(balances),
    )


def select_rows(
    conn: psycopg.Connection, row_type: type[NamedTuple], table: str, where: str, order_by: str
) -> list:
    query = sql.SQL("select {cols} from {table} where {where} order by {order}").format(
        cols=sql.SQL(", ").join(map(sql.Identifier, row_type._fields)),
        table=sql.Identifier(table),
        where=sql.SQL(where),  # type: ignore[arg-type]  # internal constant, never user input
        order=sql.Identifier(order_by),
    )
    return [row_type(*r) for r in conn.execute(query).fetchall()]


def apply_changes(conn: psycopg.Connection, changes: DayChanges) -> None:
    """Write one day; the caller holds the transaction, so the day lands whole or not at all."""
    copy_rows(conn, "products", changes.products)
    copy_rows(conn, "customers", changes.customers)
    copy_rows(conn, "accounts", changes.accounts)
    copy_rows(conn, "account_holders", changes.account_holders)
    copy_rows(conn, "account_balances", changes.account_balances)
    copy_rows(conn, "transactions", changes.transactions)
    with conn.cursor() as cur:
        cur.executemany(
            "update customers set address_line1 = coalesce(%s, address_line1),"
            " city = coalesce(%s, city), postcode = coalesce(%s, postcode),"
            " email = coalesce(%s, email), updated_at = %s where customer_id = %s",
            [(u.address_line1, u.city, u.postcode, u.email, u.updated_at, u.customer_id)
             for u in changes.customer_updates],
        )  # fmt: skip
        cur.executemany(
            "update accounts set status = %s, closed_on = %s, updated_at = %s"
            " where account_id = %s",
            [(u.status, u.closed_on, u.updated_at, u.account_id) for u in changes.account_updates],
        )
        cur.executemany(
            "update account_holders set valid_to = %s, updated_at = %s"
            " where account_id = %s and customer_id = %s and valid_from = %s",
            [(e.valid_to, e.updated_at, e.account_id, e.customer_id, e.valid_from)
             for e in changes.holder_ends],
        )  # fmt: skip
        settle_transactions(cur, changes)
        book_balances(cur, changes)
        record_aml_cases(cur, changes)
        if changes.cancellations:
            # Cancelled payments vanish from the core system: extraction has to notice the gap.
            cur.execute(
                "delete from transactions where transaction_id = any(%s)",
                (changes.cancellations,),
            )


def settle_transactions(cur: psycopg.Cursor, changes: DayChanges) -> None:
    if not changes.settlements:
        return
    # One set-based update from a COPY-filled temp table beats a thousand single-row updates.
    cur.execute(
        "create temp table if not exists settle_day"
        " (transaction_id bigint, booking_date date, updated_at timestamptz) on commit delete rows"
    )
    with cur.copy("copy settle_day (transaction_id, booking_date, updated_at) from stdin") as cp:
        for s in changes.settlements:
            cp.write_row(s)
    cur.execute(
        "update transactions t set status = 'booked', booking_date = s.booking_date,"
        " booked_at = s.updated_at, updated_at = s.updated_at"
        " from settle_day s where t.transaction_id = s.transaction_id"
    )


def book_balances(cur: psycopg.Cursor, changes: DayChanges) -> None:
    """Add the day's bookings to the ledger, one row per account however many it booked."""
    if not changes.balance_changes:
        return
    cur.execute(
        "create temp table if not exists balance_day (account_id bigint, amount numeric(14, 2),"
        " bookings int, last_booked_at timestamptz) on commit delete rows"
    )
    copy = "copy balance_day (account_id, amount, bookings, last_booked_at) from stdin"
    with cur.copy(copy) as cp:
        for change in changes.balance_changes:
            cp.write_row(change)
    # An account opened today may have booked before the moment it was recorded: the row's
    # stamp never goes back.
    cur.execute(
        "update account_balances b set balance = b.balance + d.amount,"
        " booked_transactions = b.booked_transactions + d.bookings,"
        " updated_at = greatest(b.updated_at, d.last_booked_at)"
        " from balance_day d where b.account_id = d.account_id"
    )
    if cur.rowcount != len(changes.balance_changes):
        raise RuntimeError(
            f"{len(changes.balance_changes) - cur.rowcount} account(s) booked a transaction "
            "but have no row in account_balances"
        )


def record_aml_cases(cur: psycopg.Cursor, changes: DayChanges) -> None:
    """The cases completed today, into the simulator's ground truth (never extracted)."""
    if changes.aml_cases:
        columns = sql.SQL(", ").join(map(sql.Identifier, changes.aml_cases[0]._fields))
        cur.executemany(
            sql.SQL("insert into sim_aml_cases ({}) values ({})").format(
                columns, sql.SQL(", ").join(sql.Placeholder() * len(changes.aml_cases[0]))
            ),
            changes.aml_cases,
        )


def copy_rows(conn: psycopg.Connection, table: str, rows: Sequence[NamedTuple]) -> None:
    if not rows:
        return
    statement = sql.SQL("copy {table} ({cols}) from stdin").format(
        table=sql.Identifier(table),
        cols=sql.SQL(", ").join(map(sql.Identifier, rows[0]._fields)),
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
