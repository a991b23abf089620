"""CRM / operations feed files into raw: one file is one batch, judged by its feed's contract.

A file is read as bytes, line by line, and every line is decoded and parsed on its own: a line
that is not UTF-8, not JSON, not an object or has the wrong number of CSV columns is quarantined
with its line number and the rest of the file loads. Parsed records are judged frame by frame by
the feed's GX contract (values as strings, as the database path does) and by Postgres itself
(`ops.input_is_valid`, PostgreSQL 16's `pg_input_is_valid` for every supported version, so that a
value the raw column's type refuses is quarantined instead of failing the COPY). Good rows are
COPYed into `raw.<feed>` with the file name and line number.

Every line ends in raw or quarantine exactly once. The batch row, raw rows, quarantined rows,
contract results, schema version and the `ops.files` row commit in one warehouse transaction.
`ops.files` remembers each file's checksum: the same name with the same bytes is never loaded
twice, and the same name with new bytes loads as the next version.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from flows import load
from flows.extract.postgres import BatchResult
from flows.load import Column
from flows.quality.drift import DriftReport, SchemaDriftError, record_schema
from flows.quality.quarantine import RejectedRow, ensure_quarantine_table, insert_rejected
from flows.quality.results import RuleStat, record_dq_results, refuse_if_too_many_rejected
from flows.settings import get_settings

log = logging.getLogger(__name__)

FileSource = Literal["landing", "s3"]
FEEDS = ("interactions", "opportunities", "orders")
FILE_METADATA = (
    Column("_source_file", "text"),
    Column("_source_line", "integer"),
    Column("_extras", "jsonb"),
)
PG_TYPE_OF_FAMILY = {
    "integer": "bigint",
    "numeric": "numeric",
    "text": "text",
    "timestamp": "timestamp with time zone",
    "date": "date",
    "boolean": "boolean",
}
# The rule a value breaks when Postgres refuses it for its column's type.
TYPE_RULE_SUFFIX = {
    "bigint": "not_an_integer",
    "numeric": "not_a_number",
    "timestamp with time zone": "not_a_timestamp",
    "date": "not_a_date",
    "boolean": "not_a_boolean",
}
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


@dataclass(frozen=True)
class FeedBatchResult(BatchResult):
    """A file's batch; `file_version` > 1 means the name was loaded before with other bytes."""

    file_version: int = 1

    @property
    def resent(self) -> bool:
        return self.file_version > 1


@dataclass(frozen=True)
class FeedFile:
    """One feed file, on local disk (a landing file, or an S3 object downloaded to a temp file)."""

    source: FileSource
    entity: str
    name: str  # what ops.files, ops.batches and raw call it
    path: Path
    etag: str | None = None


@dataclass
class ParsedLine:
    line_no: int
    record: dict[str, Any] | None = None
    rejected: RejectedRow | None = None


@dataclass
class FileTally:
    rows_in: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    stats: dict[str, RuleStat] = field(default_factory=dict)
    fields: dict[str, None] = field(default_factory=dict)  # every field name seen, in order


# ---------------------------------------------------------------- finding files


def feed_format(feed: str, file_name: str) -> str | None:
    """'jsonl' or 'csv' for a file a feed can hold; None for anything else (temp files, notes)."""
    if feed not in FEEDS or file_name.startswith("."):
        return None
    return SUFFIX_FORMATS.get(Path(file_name).suffix.lower())


def find_landing_files(landing_dir: Path) -> dict[str, list[FeedFile]]:
    """Feed files under landing_dir/<feed>/, per feed, in name order."""
    found: dict[str, list[FeedFile]] = {}
    for feed in FEEDS:
        folder = landing_dir / feed
        if not folder.is_dir():
            continue
        files = [
            FeedFile("landing", feed, path.relative_to(landing_dir).as_posix(), path)
            for path in folder.rglob("*")
            if path.is_file()
            and feed_format(feed, path.name)
            # The simulator writes `.name.tmp` then renames: never pick up a half-written file.
            and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        ]
        if files:
            found[feed] = sorted(files, key=lambda f: f.name)
    return found


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


# ---------------------------------------------------------------- columns


def raw_columns(feed: str) -> list[Column]:
    """The feed's typed raw columns: every column its contract types, required ones first."""
    from flows.quality.contracts import contract_for

    typed = contract_for(feed).typed
    return [Column(name, PG_TYPE_OF_FAMILY[family]) for name, family in typed.items()]


# ---------------------------------------------------------------- parsing lines


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without the line terminator); a last line may lack one."""
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            yield number, line.rstrip(b"\r\n") if line.endswith(b"\n") else line


def as_line_text(raw: bytes) -> str:
    """A line as text for a quarantine payload: bad bytes replaced, NUL (jsonb refuses it) too."""
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def malformed(line_no: int, raw: bytes, rule: str) -> ParsedLine:
    return ParsedLine(line_no, rejected=RejectedRow({"_line": as_line_text(raw)}, [rule], line_no))


def decode_line(line_no: int, raw: bytes) -> str | ParsedLine:
    """The line as text, or the malformed verdict when it is not UTF-8 or holds a NUL."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return malformed(line_no, raw, "bad_encoding")
    if "\x00" in text:  # Postgres text cannot hold NUL
        return malformed(line_no, raw, "invalid_character")
    return text.removeprefix("\ufeff") if line_no == 1 else text


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _storable(value: Any) -> bool:
    """False if a string anywhere holds NUL or a lone surrogate (\\u escapes Postgres refuses)."""
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def parse_jsonl(lines: Iterable[tuple[int, bytes]]) -> Iterator[ParsedLine]:
    for line_no, raw in lines:
        text = decode_line(line_no, raw)
        if isinstance(text, ParsedLine):
            yield text
            continue
        try:
            # Decimal keeps amounts exactly as sent; NaN/Infinity are not JSON (and not jsonb).
            record = json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
        except ValueError:
            yield malformed(line_no, raw, "malformed_json")
            continue
        if not isinstance(record, dict):
            yield malformed(line_no, raw, "not_an_object")
        elif "\\u" in text and not _storable(record):  # only escapes can smuggle them in
            yield malformed(line_no, raw, "invalid_character")
        else:
            yield ParsedLine(line_no, record=record)


def parse_csv(
    lines: Iterable[tuple[int, bytes]], entity: str, name: str, required: Iterable[str]
) -> Iterator[ParsedLine]:
    """Records keyed by the header (line 1). Empty fields are NULL. One record per line."""
    lines = iter(lines)
    header = read_csv_header(next(lines, None), entity, name, required)
    for line_no, raw in lines:
        text = decode_line(line_no, raw)
        if isinstance(text, ParsedLine):
            yield text
            continue
        try:
            fields = next(csv.reader([text], strict=True))
        except (csv.Error, StopIteration):
            yield malformed(line_no, raw, "malformed_csv")
            continue
        if len(fields) != len(header):
            yield malformed(line_no, raw, "wrong_column_count")
            continue
        yield ParsedLine(
            line_no, record={h: v or None for h, v in zip(header, fields, strict=True)}
        )


def read_csv_header(
    first: tuple[int, bytes] | None, entity: str, name: str, required: Iterable[str]
) -> list[str]:
    """The header's field names. A file without a usable header cannot be read at all."""
    if first is None:
        return []
    text = decode_line(*first)
    if isinstance(text, ParsedLine):
        raise SchemaDriftError(f"{entity}: {name}: the header line is not UTF-8 text")
    try:
        header = [h.strip() for h in next(csv.reader([text], strict=True))]
    except (csv.Error, StopIteration) as err:
        raise SchemaDriftError(f"{entity}: {name}: the header line is not CSV ({err})") from None
    missing = [c for c in required if c not in header]
    if missing or len(set(header)) != len(header):
        problem = f"lacks required columns {missing}" if missing else "repeats a column name"
        raise SchemaDriftError(f"{entity}: {name}: the header {problem}; the file was not loaded")
    return header


def parse_file(file: FeedFile, required: Iterable[str]) -> Iterator[ParsedLine]:
    lines = read_lines(file.path)
    if SUFFIX_FORMATS.get(Path(file.name).suffix.lower()) == "csv":
        return parse_csv(lines, file.entity, file.name, required)
    return parse_jsonl(lines)


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


def loaded_versions(conn: psycopg.Connection, source: str, name: str) -> dict[str, int]:
    """sha256 -> version of every version of `name` already loaded."""
    rows = conn.execute(
        "select sha256, version from ops.files where source = %s and name = %s", (source, name)
    ).fetchall()
    return dict(rows)


def etag_loaded(conn: psycopg.Connection, name: str, etag: str) -> bool:
    """Whether an object with this key and ETag was loaded already (saves its download)."""
    return (
        conn.execute(
            "select 1 from ops.files where source = 's3' and name = %s and etag = %s",
            (name, etag),
        ).fetchone()
        is not None
    )


def record_file(
    conn: psycopg.Connection,
    file: FeedFile,
    version: int,
    size: int,
    sha256: str,
    batch_id: int,
) -> None:
    conn.execute(
        """
        insert into ops.files (source, entity, name, version, size_bytes, sha256, etag, batch_id)
        values (%s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (file.source, file.entity, file.name, version, size, sha256, file.etag, batch_id),
    )


def shape_of(tally: FileTally, columns: list[Column]) -> list[Column]:
    """The file's field names: known columns in raw order, then unknown ones sorted (stable)."""
    known = [c.name for c in columns]
    extras = sorted(set(tally.fields) - set(known))
    return [Column(n, "text") for n in known if n in tally.fields] + [
        Column(n, "text") for n in extras
    ]


def drift_note(
    report: DriftReport | None, extras: list[str], name: str, version: int
) -> str | None:
    notes = []
    if version > 1:
        notes.append(f"{name} re-sent with new content: loaded as version {version}")
    if report is not None and report.changed and report.version > 1:
        notes.append(report.describe())
    elif report is not None and report.version == 1 and extras:
        notes.append(f"{report.entity} v1: fields kept in _extras: {', '.join(extras)}")
    return "; ".join(notes) or None


def prepare_ops(conn: psycopg.Connection) -> None:
    """The ops schema (ops.files included), in a short transaction of its own.

    `apply_ops_schema` takes a transaction-level advisory lock; inside the load transaction it
    would serialise every file load of every feed until commit.
    """
    with conn.transaction():
        load.apply_ops_schema(conn)


def load_feed_file(
    conn: psycopg.Connection,
    file: FeedFile,
    record_source: str,
    flow_run_id: str | None = None,
) -> FeedBatchResult | None:
    """Load one file as one batch in one transaction; None if these bytes were loaded before.

    `conn` must be in autocommit mode, so that the transaction here is the real one.
    """
    from flows.quality.contracts import contract_for
    from flows.quality.validate import get_validator

    settings = get_settings()
    started = time.perf_counter()
    size, sha256 = file_digest(file.path)
    columns = raw_columns(file.entity)
    prepare_ops(conn)
    with conn.transaction():
        load.lock_entity(conn, record_source, file.entity)
        versions = loaded_versions(conn, file.source, file.name)
        if sha256 in versions:
            log.info("%s: already loaded as version %s, skipped", file.name, versions[sha256])
            return None
        version = max(versions.values(), default=0) + 1
        # Only now: GX takes seconds to import, and a run that finds no new file needs none.
        validator = get_validator(settings.data_dir / "gx")
        load.ensure_raw_table(conn, file.entity, columns + list(FILE_METADATA))
        ensure_quarantine_table(conn, file.entity)
        batch_id = load.open_batch(
            conn, record_source, file.entity, None, flow_run_id, source_file=file.name
        )
        tally = FileTally()
        parsed = parse_file(file, contract_for(file.entity).required)
        for chunk in chunked(parsed, settings.contract_frame_rows):
            load_chunk(conn, file, batch_id, record_source, chunk, columns, validator, tally)
        quarantine_keys_repeated_across_chunks(conn, file.entity, batch_id, tally)
        report = None
        if tally.fields:  # an empty or all-malformed file says nothing about the feed's shape
            shape = shape_of(tally, columns)
            report = record_schema(conn, record_source, file.entity, shape, batch_id)
        record_dq_results(conn, batch_id, file.entity, tally.stats)
        refuse_if_too_many_rejected(file.entity, tally.rows_in, tally.rows_rejected, tally.stats)
        record_file(conn, file, version, size, sha256, batch_id)
        load.close_batch(
            conn, batch_id, tally.rows_in, tally.rows_loaded, tally.rows_rejected, 0, None
        )
    extras = sorted(set(tally.fields) - {c.name for c in columns})
    note = drift_note(report, extras, file.name, version)
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
        drift=note,
        source_file=file.name,
        file_version=version,
    )
