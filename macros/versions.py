"""Column patterns every silver model of a raw table repeats: load metadata, version flags."""

from __future__ import annotations

from sqlglot import exp
from sqlmesh import macro


@macro()
def published(evaluator, table: exp.Table) -> exp.Expression:  # type: ignore[no-untyped-def]
    """The rows of a raw table that the transformation may see: those of published batches,
    with the publication time as `_published_at` (see flows/publication.py)."""
    raw = table.sql(dialect="postgres")
    return exp.maybe_parse(
        f"(select r.*, b.published_at as _published_at from {raw} as r "
        "join ops.batches as b on b.batch_id = r._batch_id where b.published_at is not null)",
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
def version_flags(evaluator, *keys: exp.Expression) -> list[exp.Expression]:  # type: ignore[no-untyped-def]
    """is_valid and dq_issues from the rules broken, and is_latest: the key's last version
    (a delete marker wins over a row of the same batch)."""
    partition = ", ".join(k.sql(dialect="postgres") for k in keys)
    return [
        exp.maybe_parse("cardinality(dq_issues) = 0 as is_valid", dialect="postgres"),
        exp.column("dq_issues"),
        exp.maybe_parse(
            f"row_number() over (partition by {partition} order by batch_id desc, "
            "is_deleted desc) = 1 as is_latest",
            dialect="postgres",
        ),
    ]
