"""Schema drift: each entity's columns and types are versioned in ops.schema_versions.

A new column is kept (DB sources: raw gains it with the source's type; files: it lands in the
`_extras` jsonb column) and reported. A required column that disappears or changes type family
fails the batch before anything is loaded, with the entity and column named.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import psycopg

from flows.failures import BankdwError
from flows.load import Column

TYPE_FAMILIES = {
    "integer": ("smallint", "integer", "bigint"),
    "numeric": ("numeric", "double precision", "real", "smallint", "integer", "bigint"),
    "text": ("text", "character varying", "character", "varchar", "char"),
    "date": ("date",),
    "timestamp": ("timestamp with time zone", "timestamp without time zone"),
    "boolean": ("boolean",),
}


class SchemaDriftError(BankdwError):
    """A required column went missing or changed type: the batch must not load (retrying cannot
    help; the message says what to fix)."""


@dataclass
class DriftReport:
    entity: str
    version: int
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)

    def describe(self) -> str:
        parts = [f"+{c}" for c in self.added] + [f"-{c}" for c in self.removed]
        return f"{self.entity} v{self.version}: {', '.join(parts)}"


def type_family_of(pg_type: str) -> str | None:
    base = pg_type.split("(")[0].strip()
    for family, names in TYPE_FAMILIES.items():
        if base in names:
            return family
    return None


def check_required(entity: str, columns: list[Column], required: dict[str, str]) -> None:
    present = {c.name: c.type for c in columns}
    for name, family in required.items():
        if name not in present:
            raise SchemaDriftError(
                f"{entity}: required column {name!r} is missing from the source; "
                "the batch was not loaded (fix the source or the contract, then run again)"
            )
        if family == "numeric" and type_family_of(present[name]) in ("integer", "numeric"):
            continue
        if type_family_of(present[name]) != family:
            raise SchemaDriftError(
                f"{entity}: required column {name!r} changed type to {present[name]} "
                f"(contract expects {family}); the batch was not loaded"
            )


def check_types_unchanged(entity: str, source: list[Column], raw: list[Column]) -> None:
    """Any column whose source type differs from raw's stops the batch before COPY.

    COPY would fail on the first value raw's type cannot hold (1e300 into numeric(14,2), text
    into a date) and fail the same way on every retry; a type that still fits today would move
    the failure into silver. A person decides: change the source back, or widen raw.
    """
    kept = {c.name: c.type for c in raw}
    for column in source:
        before = kept.get(column.name)
        if before is not None and before != column.type:
            raise SchemaDriftError(
                f"{entity}: column {column.name!r} changed type in the source from {before} to "
                f"{column.type}; the batch was not loaded. Restore the source's type, or accept "
                f"the change in the warehouse (alter table raw.{entity} alter column "
                f"{column.name} type {column.type}, and check the silver model) and run again"
            )


def record_schema(
    conn: psycopg.Connection, source: str, entity: str, columns: list[Column], batch_id: int | None
) -> DriftReport:
    """Record the shape if it is new; say what was added or removed since the last version."""
    shape = [{"name": c.name, "type": c.type} for c in columns]
    last = conn.execute(
        "select version, columns from ops.schema_versions where source = %s and entity = %s "
        "order by version desc limit 1",
        (source, entity),
    ).fetchone()
    if last and last[1] == shape:
        return DriftReport(entity, last[0])
    before = {c["name"] for c in last[1]} if last else {c.name for c in columns}
    now = {c.name for c in columns}
    report = DriftReport(
        entity,
        (last[0] + 1) if last else 1,
        added=sorted(now - before),
        removed=sorted(before - now),
    )
    conn.execute(
        """
        insert into ops.schema_versions
            (source, entity, version, columns, added_columns, removed_columns, batch_id)
        values (%s, %s, %s, %s, %s, %s, %s)
        """,
        (source, entity, report.version, json.dumps(shape), report.added, report.removed, batch_id),
    )
    return report
