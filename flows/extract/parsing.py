"""A feed file's bytes into records, each with the line it starts on; what cannot be read
becomes a rejected line (quarantined with its line number) and the rest of the file still loads.

JSON lines: one record per line, each line decoded and parsed on its own. CSV (RFC 4180): read
by Python's csv reader, so a quoted field may hold commas, doubled quotes and line breaks; a
record is numbered by the line it starts on. The reader is fed one line at a time, so a record
it cannot read (a stray quote) is rejected whole, with every line it took, and reading goes on
at the next line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, BinaryIO

from flows.quality.drift import SchemaDriftError
from flows.quality.quarantine import RejectedRow


@dataclass
class ParsedLine:
    line_no: int  # where the record starts (1-based)
    record: dict[str, Any] | None = None
    rejected: RejectedRow | None = None


def read_lines(fh: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, the line's bytes with its terminator); the last may lack one."""
    fh.seek(0)
    yield from enumerate(fh, start=1)


def without_terminator(raw: bytes) -> bytes:
    return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith(b"\n") else raw


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


# ---------------------------------------------------------------- JSON lines


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
        raw = without_terminator(raw)
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


# ---------------------------------------------------------------- CSV


@dataclass
class CsvRecord:
    line_no: int  # the line it starts on
    raw: bytes  # every line it took, terminators included
    fields: list[str] | None  # None: the reader could not read it


def csv_records(lines: Iterable[tuple[int, bytes]]) -> Iterator[CsvRecord]:
    """RFC 4180 records with the lines they took, read by the csv module one line at a time.

    Bytes that are not UTF-8 pass through as surrogates (they never look like a quote, comma or
    line break), so one bad byte spoils only its record, which `bad_encoding` then rejects.
    """
    taken: list[tuple[int, bytes]] = []

    def feed() -> Iterator[str]:
        for line_no, raw in lines:
            taken.append((line_no, raw))
            yield raw.decode("utf-8", errors="surrogateescape")

    reader = csv.reader(feed(), strict=True)
    while True:
        try:
            fields: list[str] | None = next(reader)
        except StopIteration:
            break
        except csv.Error:
            fields = None
        if not taken:  # an error raised before the reader took a line: nothing left to read
            break
        yield CsvRecord(taken[0][0], b"".join(raw for _, raw in taken), fields)
        taken.clear()


def csv_verdict(record: CsvRecord, header: list[str]) -> ParsedLine:
    raw = without_terminator(record.raw)
    text = raw.decode("utf-8", errors="surrogateescape")
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        return malformed(record.line_no, raw, "bad_encoding")
    if "\x00" in text:  # Postgres text cannot hold NUL
        return malformed(record.line_no, raw, "invalid_character")
    if record.fields is None or not record.fields:  # a stray quote, or a blank line
        return malformed(record.line_no, raw, "malformed_csv")
    if len(record.fields) != len(header):
        return malformed(record.line_no, raw, "wrong_column_count")
    values = {h: v or None for h, v in zip(header, record.fields, strict=True)}
    return ParsedLine(record.line_no, record=values)


def parse_csv(
    lines: Iterable[tuple[int, bytes]], entity: str, name: str, required: Iterable[str]
) -> Iterator[ParsedLine]:
    """Records keyed by the header (the first record). Empty fields are NULL."""
    records = csv_records(lines)
    header = read_csv_header(next(records, None), entity, name, required)
    for record in records:
        yield csv_verdict(record, header)


def read_csv_header(
    first: CsvRecord | None, entity: str, name: str, required: Iterable[str]
) -> list[str]:
    """The header's field names. A file without a usable header cannot be read at all."""
    if first is None:
        return []
    text = without_terminator(first.raw).decode("utf-8", errors="surrogateescape")
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        raise SchemaDriftError(
            f"{entity}: {name}: line 1, the header, is not UTF-8 text; the file was not loaded "
            "(re-send it encoded as UTF-8)"
        )
    if first.fields is None:
        raise SchemaDriftError(
            f"{entity}: {name}: line 1, the header, is not CSV; the file was not loaded"
        )
    header = [h.strip() for h in first.fields]
    if header:
        header[0] = header[0].removeprefix("\ufeff")
    missing = [c for c in required if c not in header]
    if missing or len(set(header)) != len(header):
        problem = f"lacks required columns {missing}" if missing else "repeats a column name"
        raise SchemaDriftError(
            f"{entity}: {name}: the header (line 1) {problem}; the file was not loaded"
        )
    return header


def parse_feed(
    fh: BinaryIO, fmt: str, entity: str, name: str, required: Iterable[str]
) -> Iterator[ParsedLine]:
    """The open file's records, as its format (`jsonl` or `csv`) reads them."""
    lines = read_lines(fh)
    if fmt == "csv":
        return parse_csv(lines, entity, name, required)
    return parse_jsonl(lines)
