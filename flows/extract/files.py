"""One feed file into raw as one batch, judged by its feed's contract.

The file's records (parsing.py) are judged frame by frame by the feed's GX contract (values as
strings, as the database path does) and by Postgres itself (`ops.input_is_valid`, PostgreSQL
16's `pg_input_is_valid` for every supported version, so that a value the raw column's type
refuses is quarantined instead of failing the COPY). Good rows are COPYed into `raw.<feed>`
with the file name and the line each record starts on.

Every line ends in raw or quarantine exactly once. The batch row, raw rows, quarantined rows,
contract results, schema version and the `ops.files` row commit in one warehouse transaction,
and only if the file held still while it was read (landing.py). Whether the bytes are loaded at
all is the ledger's call (ledger.py): the same bytes are never loaded twice, under any name.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from flows import load
from flows.extract import ledger
from flows.extract.feed_file import FeedFile, RepeatedFile
from flows.extract.feed_tables import FILE_METADATA, raw_columns
from flows.extract.landing import ensure_unchanged, open_listed
from flows.extract.parsing import ParsedLine, parse_feed
from flows.extract.postgres import BatchResult
from flows.load import Column
from flows.quality.drift import DriftReport, record_schema
from flows.quality.quarantine import RejectedRow, ensure_quarantine_table, insert_rejected
from flows.quality.results import RuleStat, record_dq_results, refuse_if_too_many_rejected
from flows.settings import get_settings

log = logging.getLogger(__name__)

# The rule a value breaks when Postgres refuses it for its column's type.
TYPE_RULE_SUFFIX = {
    "bigint": "not_an_integer",
    "numeric": "not_a_number",
    "timestamp with time zone": "not_a_timestamp",
    "date": "not_a_date",
    "boolean": "not_a_boolean",
}
HEADER_LINES = {"csv": 1, "jsonl": 0}


@dataclass(frozen=True)
class FeedBatchResult(BatchResult):
    """A file's batch. `previous_version` is set when the name was loaded before with other
    bytes: the file was re-sent, and this is its next version (reported as such, not as drift)."""

    file_version: int = 1
    previous_version: int | None = None

    @property
    def resent(self) -> bool:
        return self.previous_version is not None

    def describe_resend(self) -> str | None:
        if self.previous_version is None:
            return None
        return (
            f"{self.source_file}: re-sent with new content, loaded as version "
            f"{self.file_version} (version {self.previous_version} stays in raw; see ops.files)"
        )


@dataclass
class FileTally:
    rows_in: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    stats: dict[str, RuleStat] = field(default_factory=dict)
    fields: dict[str, None] = field(default_factory=dict)  # every field name seen, in order


def chunked(items: Iterable[ParsedLine], size: int) -> Iterator[list[ParsedLine]]:
    chunk: list[ParsedLine] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---------------------------------------------------------------- values


def as_text(value: Any) -> str | None:
    """A parsed value as the text Postgres and the contract see (NULL stays None)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        number = float(value)
        return number if np.isfinite(number) else str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def plain_json(value: Any) -> Any:
    """The record with Decimals as JSON numbers (strings when out of float range)."""
    return json.loads(json.dumps(value, default=_json_default))


# ---------------------------------------------------------------- judging and loading


def invalid_for_type(
    conn: psycopg.Connection, frame: pd.DataFrame, columns: list[Column]
) -> dict[str, list[int]]:
    """Rule -> row positions whose value the raw column's type would refuse (asks Postgres)."""
    broken: dict[str, list[int]] = {}
    for column in columns:
        suffix = TYPE_RULE_SUFFIX.get(column.type)
        if suffix is None:
            continue
        values = frame[column.name].dropna().unique().tolist()
        if not values:
            continue
        bad = {
            v
            for (v,) in conn.execute(
                "select v from unnest(%s::text[]) as v where not ops.input_is_valid(v, %s)",
                (values, column.type),
            )
        }
        if bad:
            positions = np.flatnonzero(frame[column.name].isin(bad).to_numpy())
            broken[f"{column.name}_{suffix}"] = [int(p) for p in positions]
    return broken


def judge_frame(
    conn: psycopg.Connection,
    entity: str,
    records: list[dict[str, Any]],
    columns: list[Column],
    validator,  # type: ignore[no-untyped-def]
    stats: dict[str, RuleStat],
) -> tuple[pd.DataFrame, dict[int, list[str]]]:
    """The records as a frame of strings (NULL as NaN) and the rules each row broke."""
    from flows.quality.validate import merge_stats

    names = [c.name for c in columns]
    frame = pd.DataFrame(
        [[as_text(r.get(n)) for n in names] for r in records], columns=names, dtype=object
    )
    frame = frame.where(frame.notna(), np.nan)
    verdict = validator.validate(entity, frame)
    merge_stats(stats, verdict.stats)
    broken: dict[int, list[str]] = defaultdict(list)
    for position, rules in verdict.broken.items():
        broken[position].extend(rules)
    for rule, positions in invalid_for_type(conn, frame, columns).items():
        column = rule.rsplit("_not_", 1)[0]
        # "abc" for an integer already broke `<col>_not_a_number` in the contract: once is enough.
        fresh = [p for p in positions if f"{column}_not_a_number" not in broken[p]]
        for position in fresh:
            broken[position].append(rule)
        stats.setdefault(rule, RuleStat(rule, column)).add(len(frame), len(fresh))
    return frame, {p: rules for p, rules in broken.items() if rules}


def load_chunk(
    conn: psycopg.Connection,
    file: FeedFile,
    batch_id: int,
    record_source: str,
    chunk: list[ParsedLine],
    columns: list[Column],
    validator,  # type: ignore[no-untyped-def]
    tally: FileTally,
) -> None:
    """Judge one chunk of parsed lines; good rows into raw, the rest into quarantine."""
    rejected = [p.rejected for p in chunk if p.rejected is not None]
    for rule, failed in Counter(r.rules[0] for r in rejected).items():
        tally.stats.setdefault(rule, RuleStat(rule, "")).add(len(chunk), failed)
    parsed = [p for p in chunk if p.record is not None]
    records = [p.record for p in parsed]
    for record in records:
        tally.fields.update(dict.fromkeys(record))
    broken: dict[int, list[str]] = {}
    if records:
        frame, broken = judge_frame(conn, file.entity, records, columns, validator, tally.stats)
        good = [i for i in range(len(parsed)) if i not in broken]
        copy_into_raw(conn, file, frame, [parsed[i] for i in good], good, columns)
        rejected += [
            RejectedRow(plain_json(parsed[i].record), rules, parsed[i].line_no)
            for i, rules in sorted(broken.items())
        ]
    insert_rejected(conn, file.entity, batch_id, record_source, rejected, source_file=file.name)
    tally.rows_in += len(chunk)
    tally.rows_loaded += len(parsed) - len(broken)
    tally.rows_rejected += len(rejected)


def copy_into_raw(
    conn: psycopg.Connection,
    file: FeedFile,
    frame: pd.DataFrame,
    lines: list[ParsedLine],
    positions: list[int],
    columns: list[Column],
) -> None:
    names = [c.name for c in columns]
    known = set(names)
    target = sql.SQL("copy {table} ({cols}) from stdin").format(
        table=sql.Identifier("raw", file.entity),
        cols=sql.SQL(", ").join(sql.Identifier(n) for n in [*names, *_metadata_names()]),
    )
    values = frame.astype(object).where(frame.notna(), None).to_numpy()
    with conn.cursor() as cur, cur.copy(target) as copy:
        for line, position in zip(lines, positions, strict=True):
            extras = {k: v for k, v in line.record.items() if k not in known}
            copy.write_row(
                (
                    *values[position],
                    file.name,
                    line.line_no,
                    json.dumps(extras, default=_json_default) if extras else None,
                )
            )


def _metadata_names() -> list[str]:
    return [c.name for c in FILE_METADATA]


# ---------------------------------------------------------------- bookkeeping


def quarantine_keys_repeated_across_chunks(
    conn: psycopg.Connection, entity: str, batch_id: int, tally: FileTally
) -> None:
    """GX judged the file frame by frame: a key repeated in two frames (or spelt two ways, as
    '10:00Z' and '10:00+00') is caught here, where the whole file lies in raw, typed."""
    from datetime import UTC, datetime

    from flows.quality.contracts import contract_for
    from flows.quality.sql_contract import quarantine_batch

    contract = contract_for(entity)
    unique = [rule for rule in contract.checks if rule.kind == "unique"]
    moved, stats = quarantine_batch(
        conn, contract, batch_id, tally.rows_loaded, datetime.now(UTC), unique, from_file=True
    )
    for rule in unique:
        tally.stats.setdefault(rule.name, RuleStat(rule.name, stats[rule.name].column)).add(
            0, stats[rule.name].failed
        )
    tally.rows_loaded -= moved
    tally.rows_rejected += moved


def shape_of(tally: FileTally, columns: list[Column]) -> list[Column]:
    """The file's field names: known columns in raw order, then unknown ones sorted (stable)."""
    known = [c.name for c in columns]
    extras = sorted(set(tally.fields) - set(known))
    return [Column(n, "text") for n in known if n in tally.fields] + [
        Column(n, "text") for n in extras
    ]


def schema_note(report: DriftReport | None, extras: list[str]) -> str | None:
    """Schema drift only: a new shape of the feed (a re-sent file is reported on its own)."""
    if report is not None and report.changed and report.version > 1:
        return report.describe()
    if report is not None and report.version == 1 and extras:
        return f"{report.entity} v1: fields kept in _extras: {', '.join(extras)}"
    return None


def load_feed_file(
    conn: psycopg.Connection,
    file: FeedFile,
    record_source: str,
    flow_run_id: str | None = None,
) -> FeedBatchResult | RepeatedFile | None:
    """Load one file as one batch in one transaction. Bytes loaded before are not loaded again:
    a RepeatedFile says which file holds them (None: the ledger only learnt the file's time).

    Raises SetAsideError, with nothing stored, for a file that is a link or changed while it
    was read. `conn` must be in autocommit mode, so that the transaction here is the real one.
    """
    from flows.quality.contracts import contract_for

    started = time.perf_counter()
    ledger.prepare_ops(conn)
    with open_listed(file) as fh:
        digest = ledger.file_digest(fh, HEADER_LINES[file.format])
        ensure_unchanged(fh, file)  # the bytes hashed are the file as listed
        with conn.transaction():
            load.lock_entity(conn, record_source, file.entity)
            ledger.lock_content(conn, digest.sha256)
            delivery = ledger.decide(conn, file, digest)
            if delivery.backfilled:
                log.info("%s: unchanged since version %s", file.name, delivery.version)
                return None
            if delivery.repeat is not None:
                ledger.record_repeat(conn, file, delivery, digest)
                return delivery.repeat
            batch_id, tally, report = load_records(
                conn, file, fh, record_source, flow_run_id, contract_for(file.entity).required
            )
            ensure_unchanged(fh, file)  # read whole, as listed: else roll back, load nothing
            ledger.record_loaded(conn, file, delivery.version, digest, batch_id)
            load.close_batch(
                conn, batch_id, tally.rows_in, tally.rows_loaded, tally.rows_rejected, 0, None
            )
    columns = {c.name for c in raw_columns(file.entity)}
    extras = sorted(set(tally.fields) - columns)
    return FeedBatchResult(
        entity=file.entity,
        batch_id=batch_id,
        rows_in=tally.rows_in,
        rows_loaded=tally.rows_loaded,
        rows_quarantined=tally.rows_rejected,
        rows_deleted=0,
        watermark_from=None,
        watermark_to=None,
        seconds=time.perf_counter() - started,
        drift=schema_note(report, extras),
        source_file=file.name,
        file_version=delivery.version,
        previous_version=delivery.previous_version,
    )


def load_records(
    conn: psycopg.Connection,
    file: FeedFile,
    fh: BinaryIO,
    record_source: str,
    flow_run_id: str | None,
    required: dict[str, str],
) -> tuple[int, FileTally, DriftReport | None]:
    """Open the batch, judge the file's records, raw and quarantine them, record the results."""
    from flows.quality.validate import get_validator

    settings = get_settings()
    columns = raw_columns(file.entity)
    # Only now: GX takes seconds to import, and a run that finds no new file needs none.
    validator = get_validator(settings.data_dir / "gx")
    load.ensure_raw_table(conn, file.entity, columns + list(FILE_METADATA))
    ensure_quarantine_table(conn, file.entity)
    batch_id = load.open_batch(
        conn, record_source, file.entity, None, flow_run_id, source_file=file.name
    )
    tally = FileTally()
    parsed = parse_feed(fh, file.format, file.entity, file.name, required)
    for chunk in chunked(parsed, settings.contract_frame_rows):
        load_chunk(conn, file, batch_id, record_source, chunk, columns, validator, tally)
    quarantine_keys_repeated_across_chunks(conn, file.entity, batch_id, tally)
    report = None
    if tally.fields:  # an empty or all-malformed file says nothing about the feed's shape
        shape = shape_of(tally, columns)
        report = record_schema(conn, record_source, file.entity, shape, batch_id)
    record_dq_results(conn, batch_id, file.entity, tally.stats)
    refuse_if_too_many_rejected(file.entity, tally.rows_in, tally.rows_rejected, tally.stats)
    return batch_id, tally, report
