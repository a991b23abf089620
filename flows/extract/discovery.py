"""Feed discovery: which files a run loads. A run costs what is new, not what is old.

The landing folder (or bucket) is listed, names and sizes and modification times (or ETags)
only, and one query against the ledger (ops.files) keeps the files it has not seen as they are
now. Only those become Prefect tasks, and only those are read and hashed: a landing folder
holding years of daily files costs a directory listing and one query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from flows.extract import ledger
from flows.extract.feed_file import FeedFile, IgnoredFile
from flows.extract.landing import list_landing

if TYPE_CHECKING:  # boto3 and prefect-aws cost a second to import: only S3 needs them
    from prefect_aws import S3Bucket


@dataclass
class Discovery:
    """What a run found: the files to load (per feed, in name order) and what it ignored."""

    files: dict[str, list[FeedFile]] = field(default_factory=dict)
    ignored: list[IgnoredFile] = field(default_factory=list)
    listed: int = 0  # feed files under their final names
    unchanged: int = 0  # of those, already in the ledger as they are now
    seconds: float = 0.0

    @property
    def new(self) -> int:
        return sum(len(files) for files in self.files.values())

    def describe(self) -> str:
        return (
            f"{self.listed} feed files listed, {self.new} new or changed, {self.unchanged} "
            f"unchanged, {len(self.ignored)} ignored, in {self.seconds:.3f} s"
        )


def keep_new_or_changed(
    conn: psycopg.Connection,
    found: dict[str, list[FeedFile]],
    ignored: list[IgnoredFile],
    started: float,
) -> Discovery:
    listed = [f for files in found.values() for f in files]
    ledger.prepare_ops(conn)
    fresh = ledger.new_or_changed(conn, listed)
    files = {feed: [f for f in group if f.name in fresh] for feed, group in found.items()}
    files = {feed: group for feed, group in files.items() if group}
    discovery = Discovery(files, ignored, len(listed), len(listed) - len(fresh))
    discovery.seconds = time.perf_counter() - started
    return discovery


def discover_landing(conn: psycopg.Connection, root: Path, quiet_seconds: float = 0.0) -> Discovery:
    """New or changed files of the landing folder. With a quiet period, a file modified less
    than `quiet_seconds` ago waits for a later run (for senders that cannot rename)."""
    started = time.perf_counter()
    listing = list_landing(root)
    discovery = keep_new_or_changed(conn, listing.files, listing.ignored, started)
    if quiet_seconds > 0:
        settled_before = time.time_ns() - int(quiet_seconds * 1e9)
        for feed, files in list(discovery.files.items()):
            waiting = [f for f in files if (f.modified_ns or 0) > settled_before]
            discovery.ignored += [IgnoredFile("landing", f.name, "quiet_period") for f in waiting]
            discovery.files[feed] = [f for f in files if f not in waiting]
        discovery.files = {feed: files for feed, files in discovery.files.items() if files}
    return discovery


def discover_s3(conn: psycopg.Connection, bucket: S3Bucket, prefix: str) -> Discovery:
    """New or changed objects under the prefix (key and ETag compared with the ledger)."""
    from flows.extract.s3 import list_feed_objects

    started = time.perf_counter()
    listing = list_feed_objects(bucket, prefix)
    return keep_new_or_changed(conn, listing.files, listing.ignored, started)
