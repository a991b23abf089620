"""Physical upkeep of large model tables, as post-statements: indexes on what incremental loads
look up, and fresh statistics, so the planner never guesses a freshly filled table's size."""

from __future__ import annotations

import hashlib

from sqlglot import exp
from sqlmesh import macro

STAGES = ("creating", "evaluating")


@macro()
def create_index(evaluator, *columns: exp.Expression) -> str | None:  # type: ignore[no-untyped-def]
    """`create index if not exists` on this model's physical table (no-op when it exists).

    The name hashes table and columns: physical tables are versioned, and an index name is
    unique per schema.
    """
    if evaluator.runtime_stage not in STAGES:
        return None
    table = evaluator.this_model
    listed = ", ".join(c.sql(dialect="postgres") for c in columns)
    name = "ix_" + hashlib.md5(f"{table}({listed})".encode()).hexdigest()[:24]
    return f"create index if not exists {name} on {table} ({listed})"


@macro()
def analyze_table(evaluator) -> str | None:  # type: ignore[no-untyped-def]
    """ANALYZE this model's table after each evaluation: a sample, so its cost does not grow with
    the table, and the next model's plan sees today's rows."""
    if evaluator.runtime_stage not in STAGES:
        return None
    return f"analyze {evaluator.this_model}"
