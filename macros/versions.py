"""Column and source patterns every silver model of a raw table repeats: the published rows of an
interval, load metadata, verdict columns."""

from __future__ import annotations

from sqlglot import exp
from sqlmesh import macro


@macro()
def published(  # type: ignore[no-untyped-def]
    evaluator, table: exp.Table, start: exp.Expression, end: exp.Expression
) -> exp.Expression:
    """The rows of a raw table that batches published in [start, end] brought, with the
    publication time as `_published_at` (see flows/publication.py). Only published batches are
    visible to the transformation, so an interval's rows are fixed once it is processed."""
    raw = table.sql(dialect="postgres")
    window = f"between {start.sql(dialect='postgres')} and {end.sql(dialect='postgres')}"
    # The interval's batch ids first, then raw through its batch index: joined directly, the
    # planner (whose statistics never hold the newest batches) hashed a scan of all of raw.
    return exp.maybe_parse(
        f"(select r.*, b.published_at as _published_at from {raw} as r "
        "join ops.batches as b on b.batch_id = r._batch_id "
        "where r._batch_id = any(array("
        f"select batch_id from ops.batches where published_at {window})) "
        f"and b.published_at {window})",
        dialect="postgres",
    )


@macro()
def load_metadata(evaluator) -> list[exp.Expression]:  # type: ignore[no-untyped-def]
    """raw's load metadata under silver's names: batch_id, load_ts (when the batch was published
    to the transformation), record_source, is_deleted."""
    return [
        exp.alias_(exp.column(raw), name)
        for raw, name in (
            ("_batch_id", "batch_id"),
            ("_published_at", "load_ts"),
            ("_record_source", "record_source"),
            ("_is_deleted", "is_deleted"),
        )
    ]


@macro()
def verdict(evaluator) -> list[exp.Expression]:  # type: ignore[no-untyped-def]
    """is_valid and dq_issues from the rules a version broke (judged against history up to it,
    so a silver row never needs rewriting)."""
    return [
        exp.maybe_parse("cardinality(dq_issues) = 0 as is_valid", dialect="postgres"),
        exp.column("dq_issues"),
    ]
