"""What a feed file is: the feeds, the names a feed folder may hold (the landing protocol's
rules on names), and the records that travel from discovery to loading and into the run summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

FileSource = Literal["landing", "s3"]
FEEDS = ("interactions", "opportunities", "orders")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
# Landing protocol: a sender writes under a temporary name and renames the file into place when
# it is complete. A leading dot (`.orders_2026-01-03.csv.tmp`, what the simulator writes) or one
# of these suffixes (what SFTP clients such as WinSCP use) marks a file still being written.
TEMPORARY_SUFFIXES = (".tmp", ".part", ".partial", ".filepart")

# Why a file is not loaded: the code in ops.ignored_files, and what it means for the sender.
IGNORED_REASONS = {
    "symlink": "a symbolic link: refused, nothing outside the landing folder is read; "
    "deliver the file itself",
    "not_a_file": "not a regular file (a FIFO, socket or device); deliver a regular file",
    "hidden": "a hidden name: never read (the landing protocol writes `.name.tmp` and renames "
    "it once complete)",
    "temporary": "a temporary name (*.tmp, *.part, *.partial, *.filepart): still being "
    "written; it is taken once renamed to its final name",
    "unknown_extension": "not a feed file: feed files end in .jsonl, .ndjson or .csv",
    "not_in_a_feed": "not in a feed folder: feed files go in interactions/, opportunities/ "
    "or orders/",
    "unsafe_key": "an object key with an empty, '.' or '..' segment: refused",
    "quiet_period": "modified less than LANDING_QUIET_SECONDS ago: a later run takes it",
    "gone": "moved or deleted between the listing and the reading: nothing to load",
    "changing": "changed while it was read: still being written, nothing of it was loaded; a "
    "later run takes it once it holds still (senders: write under a temporary name, then "
    "rename)",
}


@dataclass(frozen=True)
class FeedFile:
    """A feed file found by discovery: where it is, and what it looked like when listed."""

    source: FileSource
    entity: str
    name: str  # path relative to the landing folder, or the object key: what ops and raw call it
    size: int
    modified_ns: int | None = None  # landing: st_mtime_ns when listed
    etag: str | None = None  # S3
    root: Path | None = None  # landing: the folder `name` is relative to (opened without links)
    path: Path | None = None  # S3: the downloaded copy

    @property
    def format(self) -> str:
        return SUFFIX_FORMATS[PurePosixPath(self.name).suffix.lower()]


@dataclass(frozen=True)
class IgnoredFile:
    """A file (or folder, name ending in '/') the loader did not load, and why."""

    source: FileSource
    name: str
    reason: str  # a key of IGNORED_REASONS

    @property
    def detail(self) -> str:
        return IGNORED_REASONS[self.reason]

    def describe(self) -> str:
        return f"{self.name}: {self.detail}"


@dataclass(frozen=True)
class RepeatedFile:
    """A file whose bytes were loaded before (under its own name or another): not loaded again."""

    source: FileSource
    entity: str
    name: str
    same_as: str  # the loaded file with these bytes
    same_as_version: int
    batch_id: int  # the batch that loaded them

    def describe(self) -> str:
        where = (
            f"version {self.same_as_version}"
            if self.same_as == self.name
            else f"{self.same_as} (version {self.same_as_version})"
        )
        return (
            f"{self.name}: the same bytes as {where}, loaded by batch {self.batch_id}; "
            "not loaded again"
        )


def why_ignored_name(name: str) -> str | None:
    """The reason a file in a feed folder is not a feed file, judged by its name; None if it is."""
    if name.startswith("."):
        return "hidden"
    lower = name.lower()
    if lower.endswith(TEMPORARY_SUFFIXES):
        return "temporary"
    if Path(lower).suffix not in SUFFIX_FORMATS:
        return "unknown_extension"
    return None
