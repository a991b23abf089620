"""The ledger of feed files, `ops.files`: the truth about which files are new.

Every file the loader decides about leaves a row: `loaded` (with its batch), or `repeat` (its
bytes were loaded before, under its own name or another; the row names that file and batch).
A run lists the landing folder (or bucket) and keeps, in one query, only the names whose size
and modification time (or ETag) differ from their last row: only those are read and hashed.
Content is then keyed by sha256: the same bytes are never loaded twice, whatever their name.
Files that carry no record (an empty file, a CSV header alone) are exempt across names: every
quiet day sends the same header, and each is its own day's delivery.

`ops.ignored_files` keeps what was not loaded and why (one row per name, last seen when).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import BinaryIO

import psycopg

from flows import load
from flows.extract.feed_file import FeedFile, FileSource, IgnoredFile, RepeatedFile
from flows.quality.results import raise_alert

BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str
    carries_records: bool  # more lines than a header: a repeat of it under another name matters


@dataclass(frozen=True)
class Delivery:
    """What to do with a file's bytes: load them as `version`, or nothing (`repeat` says why)."""

    version: int
    previous_version: int | None = None  # the name's last loaded version: a re-send
    repeat: RepeatedFile | None = None
    backfilled: bool = False  # a row from before the ledger kept modification times, now has it


def prepare_ops(conn: psycopg.Connection) -> None:
    """The ops schema (ops.files included), in a short transaction of its own.

    `apply_ops_schema` takes a transaction-level advisory lock; inside the load transaction it
    would serialise every file load of every feed until commit.
    """
    with conn.transaction():
        load.apply_ops_schema(conn)


def file_digest(fh: BinaryIO, header_lines: int) -> FileDigest:
    """Size, sha256 and whether the file holds more than `header_lines` lines, read in blocks."""
    digest = hashlib.sha256()
    size = newlines = 0
    last = b"\n"
    fh.seek(0)
    while block := fh.read(BLOCK_BYTES):
        digest.update(block)
        size += len(block)
        newlines += block.count(b"\n")
        last = block[-1:]
    lines = newlines + (last != b"\n")
    return FileDigest(size, digest.hexdigest(), lines > header_lines)


def new_or_changed(conn: psycopg.Connection, files: list[FeedFile]) -> set[str]:
    """Names of the listed files that the ledger has not seen as they are now (one query).

    Landing files compare size and modification time (ns) with the name's last row; S3 objects
    size and ETag. A row from before the ledger kept modification times counts as changed once.
    """
    if not files:
        return set()
    rows = conn.execute(
        """
        select l.name
        from unnest(%(names)s::text[], %(sources)s::text[], %(sizes)s::bigint[],
                    %(modified)s::bigint[], %(etags)s::text[])
            as l(name, source, size_bytes, modified_ns, etag)
        left join lateral (
            select f.size_bytes, f.modified_ns, f.etag
            from ops.files as f
            where f.source = l.source and f.name = l.name
            order by f.version desc
            limit 1
        ) as seen on true
        where seen.size_bytes is distinct from l.size_bytes
           or (l.source = 'landing' and seen.modified_ns is distinct from l.modified_ns)
           or (l.source = 's3' and (l.etag is null or seen.etag is distinct from l.etag))
        """,
        {
            "names": [f.name for f in files],
            "sources": [f.source for f in files],
            "sizes": [f.size for f in files],
            "modified": [f.modified_ns for f in files],
            "etags": [f.etag for f in files],
        },
    ).fetchall()
    return {name for (name,) in rows}


def lock_content(conn: psycopg.Connection, sha256: str) -> None:
    """Serialise loads of the same bytes (two feeds, two names) until this transaction ends."""
    conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"bankdw:file:{sha256}",))


def decide(conn: psycopg.Connection, file: FeedFile, digest: FileDigest) -> Delivery:
    """Load these bytes as the name's next version, or not: they were loaded before."""
    latest = conn.execute(
        "select version, sha256, status, modified_ns from ops.files "
        "where source = %s and name = %s order by version desc limit 1",
        (file.source, file.name),
    ).fetchone()
    version = latest[0] + 1 if latest else 1
    original = conn.execute(
        """
        select name, version, batch_id from ops.files
        where sha256 = %(sha)s and status = 'loaded'
          and (%(records)s or (source = %(source)s and name = %(name)s))
        order by loaded_at, version
        limit 1
        """,
        {
            "sha": digest.sha256,
            "records": digest.carries_records,
            "source": file.source,
            "name": file.name,
        },
    ).fetchone()
    if original is None:
        previous = conn.execute(
            "select max(version) from ops.files "
            "where source = %s and name = %s and status = 'loaded'",
            (file.source, file.name),
        ).fetchone()[0]
        return Delivery(version, previous_version=previous)
    unchanged = latest is not None and latest[1] == digest.sha256 and latest[2] == "loaded"
    if unchanged and latest[3] is None and file.modified_ns is not None:
        _backfill(conn, file, latest[0])
        return Delivery(latest[0], backfilled=True)
    name, original_version, batch_id = original
    repeat = RepeatedFile(file.source, file.entity, file.name, name, original_version, batch_id)
    return Delivery(version, repeat=repeat)


def _backfill(conn: psycopg.Connection, file: FeedFile, version: int) -> None:
    conn.execute(
        "update ops.files set modified_ns = %s where source = %s and name = %s and version = %s",
        (file.modified_ns, file.source, file.name, version),
    )


def record_loaded(
    conn: psycopg.Connection, file: FeedFile, version: int, digest: FileDigest, batch_id: int
) -> None:
    _insert(conn, file, version, digest, "loaded", batch_id, None)


def record_repeat(
    conn: psycopg.Connection, file: FeedFile, delivery: Delivery, digest: FileDigest
) -> None:
    assert delivery.repeat is not None
    repeat = delivery.repeat
    _insert(conn, file, delivery.version, digest, "repeat", repeat.batch_id, repeat.same_as)


def _insert(
    conn: psycopg.Connection,
    file: FeedFile,
    version: int,
    digest: FileDigest,
    status: str,
    batch_id: int,
    repeat_of: str | None,
) -> None:
    conn.execute(
        """
        insert into ops.files (source, entity, name, version, size_bytes, sha256, etag,
                               modified_ns, status, repeat_of, batch_id)
        values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            file.source,
            file.entity,
            file.name,
            version,
            digest.size,
            digest.sha256,
            file.etag,
            file.modified_ns,
            status,
            repeat_of,
            batch_id,
        ),
    )


def record_ignored(
    conn: psycopg.Connection, record_source: str, source: FileSource, ignored: list[IgnoredFile]
) -> None:
    """Make ops.ignored_files what this run ignored (first seen when, last seen now): a name it
    no longer ignores (loaded at last, renamed, removed) leaves. A refused link raises an alert
    the first time it is seen: a link out of the landing folder is a security matter."""
    with conn.transaction():
        conn.execute(
            "delete from ops.ignored_files where source = %s and not (name = any(%s))",
            (source, [i.name for i in ignored]),
        )
        if not ignored:
            return
        rows = conn.execute(
            """
            insert into ops.ignored_files as i (source, name, reason, detail)
            select %s, * from unnest(%s::text[], %s::text[], %s::text[])
            on conflict (source, name) do update
            set reason = excluded.reason, detail = excluded.detail,
                last_seen = clock_timestamp()
            returning i.name, i.reason, (xmax = 0) as first_seen
            """,
            (
                source,
                [i.name for i in ignored],
                [i.reason for i in ignored],
                [i.detail for i in ignored],
            ),
        ).fetchall()
        for name, reason, first_seen in rows:
            if first_seen and reason == "symlink":
                raise_alert(
                    conn,
                    "warning",
                    record_source,
                    name.split("/", 1)[0],
                    None,
                    f"{source} {name}: a symbolic link in the landing folder was refused and "
                    "not read (nothing outside the landing folder is). Ask the sender to "
                    "deliver the file itself; see ops.ignored_files",
                )
