"""Physical upkeep of large model tables, as post-statements: indexes on what incremental loads
look up, and statistics kept fresh, so the planner never guesses a freshly filled table's size."""

from __future__ import annotations

import hashlib

from sqlglot import exp
from sqlmesh import macro

STAGES = ("creating", "evaluating")


def _index(evaluator, columns: tuple[exp.Expression, ...], unique: bool) -> str | None:  # type: ignore[no-untyped-def]
    if evaluator.runtime_stage not in STAGES:
        return None
    table = evaluator.this_model
    listed = ", ".join(c.sql(dialect="postgres") for c in columns)
    kind = "unique index" if unique else "index"
    name = "ix_" + hashlib.md5(f"{table}({listed}){kind}".encode()).hexdigest()[:24]
    ddl = f"create {kind} if not exists {name} on {table} ({listed})"
    if evaluator.runtime_stage == "creating":
        return ddl
    # On every run, look before asking: `create index if not exists` takes its table lock before
    # it looks, waits for an autovacuum of the table (which yields only after deadlock_timeout,
    # 1 s) and cancels it; a run paid a second per large table and those were never vacuumed.
    schema = exp.to_table(table, dialect="postgres").db
    index = exp.table_(name, db=schema, quoted=True).sql(dialect="postgres")
    qualified = exp.Literal.string(index).sql(dialect="postgres")
    statement = exp.Literal.string(ddl).sql(dialect="postgres")
    return f"select ops.create_index_if_missing({qualified}, {statement})"


@macro()
def create_index(evaluator, *columns: exp.Expression) -> str | None:  # type: ignore[no-untyped-def]
    """An index on this model's physical table, created when missing (a catalog lookup when not).

    The name hashes table and columns: physical tables are versioned, and an index name is
    unique per schema.
    """
    return _index(evaluator, columns, unique=False)


@macro()
def create_unique_index(evaluator, *columns: exp.Expression) -> str | None:  # type: ignore[no-untyped-def]
    """A unique index: the grain of an upserted table, enforced where each upsert writes, so that
    its audits need only look at the rows a run wrote."""
    return _index(evaluator, columns, unique=True)


@macro()
def analyze_table(evaluator) -> str | None:  # type: ignore[no-untyped-def]
    """ANALYZE this model's table after a load when its statistics are stale (never taken, or a
    fifth of the table written since: ops.analyze_if_stale), so that the next model's plan never
    guesses a freshly filled table's size, and a run does not pay a sample of every table."""
    if evaluator.runtime_stage not in STAGES:
        return None
    table = exp.Literal.string(evaluator.this_model).sql(dialect="postgres")
    return f"select ops.analyze_if_stale({table}::regclass)"


@macro()
def without_nested_loops(evaluator) -> str | None:  # type: ignore[no-untyped-def]
    """Pre-statement of a satellite load: joins between the pattern's intermediate results by
    hash, never by nested loop. Statistics lag behind an interval's new rows (their load times
    lie past the histogram), so each intermediate result looks like one row and the planner
    rescans one for every row of another: on 300 days of history a one-day load of
    sat_transaction_details took 9 s. The pattern's reads of tables go through indexes by
    `= any(array(...))`, which needs no nested loop. `with_nested_loops()` restores it."""
    return "set enable_nestloop = off" if evaluator.runtime_stage == "evaluating" else None


@macro()
def with_nested_loops(evaluator) -> str | None:  # type: ignore[no-untyped-def]
    """Post-statement restoring the session's default after `without_nested_loops()`."""
    return "set enable_nestloop = default" if evaluator.runtime_stage == "evaluating" else None
