"""The landing folder: listing it under the landing protocol, and opening a listed file safely.

Nothing outside the landing folder is ever read. The listing never follows a symbolic link (to a
file or a folder): a link is refused and reported, whatever it points at. A listed file is then
opened one folder at a time from the landing folder, with O_NOFOLLOW at every step, so that a
link swapped in after the listing is refused too, and it must be a regular file (a FIFO would
block the run). Only names the landing protocol counts as complete are listed (see feed_file.py);
everything else is reported as ignored, with why.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from flows.extract.feed_file import FEEDS, FeedFile, IgnoredFile, why_ignored_name

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just after, by fstat.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


class SetAsideError(Exception):
    """A listed file the loader does not read now: refused, or still being written."""

    def __init__(self, ignored: IgnoredFile) -> None:
        super().__init__(ignored.describe())
        self.ignored = ignored


@dataclass
class LandingListing:
    """Feed files under their final names (per feed, in name order) and what was ignored."""

    files: dict[str, list[FeedFile]] = field(default_factory=dict)
    ignored: list[IgnoredFile] = field(default_factory=list)


def list_landing(root: Path) -> LandingListing:
    """Feed files under root/<feed>/ (subfolders included), without following any link."""
    listing = LandingListing()
    if not root.is_dir():
        return listing
    with os.scandir(root) as entries:
        top = sorted(entries, key=lambda e: e.name)
    for entry in top:
        folder = entry.is_dir(follow_symlinks=False)
        name = entry.name + ("/" if folder else "")
        if entry.is_symlink():
            listing.ignored.append(IgnoredFile("landing", name, "symlink"))
        elif entry.name.startswith("."):
            listing.ignored.append(IgnoredFile("landing", name, "hidden"))
        elif folder and entry.name in FEEDS:
            files = list(_walk_feed(root, entry.name, listing.ignored))
            if files:
                listing.files[entry.name] = sorted(files, key=lambda f: f.name)
        else:
            listing.ignored.append(IgnoredFile("landing", name, "not_in_a_feed"))
    return listing


def _walk_feed(root: Path, feed: str, ignored: list[IgnoredFile]) -> Iterator[FeedFile]:
    """The feed folder's files, depth first; links are reported, never followed."""
    folders = [feed]
    while folders:
        relative = folders.pop()
        with os.scandir(root / relative) as entries:
            for entry in entries:
                name = f"{relative}/{entry.name}"
                if entry.is_symlink():
                    ignored.append(IgnoredFile("landing", name, "symlink"))
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name.startswith("."):
                        ignored.append(IgnoredFile("landing", name + "/", "hidden"))
                    else:
                        folders.append(name)
                elif not entry.is_file(follow_symlinks=False):
                    ignored.append(IgnoredFile("landing", name, "not_a_file"))
                elif reason := why_ignored_name(entry.name):
                    ignored.append(IgnoredFile("landing", name, reason))
                else:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # renamed or moved while the folder was listed
                        ignored.append(IgnoredFile("landing", name, "gone"))
                        continue
                    yield FeedFile(
                        "landing",
                        feed,
                        name,
                        info.st_size,
                        modified_ns=info.st_mtime_ns,
                        root=root,
                    )


@contextmanager
def open_listed(file: FeedFile) -> Iterator[BinaryIO]:
    """The listed file, open for reading: no link anywhere below the landing folder, a regular
    file, and as it was when listed (else SetAsideError, and nothing is read)."""
    if file.root is None:  # an S3 object's downloaded copy: a file bankdw wrote itself
        assert file.path is not None
        with file.path.open("rb") as fh:
            yield fh
        return
    fd = _open_without_links(file)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SetAsideError(IgnoredFile("landing", file.name, "not_a_file"))
        os.set_blocking(fh.fileno(), True)
        ensure_unchanged(fh, file)
        yield fh


def _open_without_links(file: FeedFile) -> int:
    parts = PurePosixPath(file.name).parts
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise SetAsideError(IgnoredFile("landing", file.name, "unsafe_key"))
    directory = os.open(file.root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, DIRECTORY_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = inner
        return os.open(parts[-1], FILE_FLAGS, dir_fd=directory)
    except OSError as err:
        # O_NOFOLLOW on a link fails with ELOOP.
        if err.errno == errno.ELOOP:
            raise SetAsideError(IgnoredFile("landing", file.name, "symlink")) from None
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            # Moved or renamed since the listing: nothing to load here; a later run sees it.
            raise SetAsideError(IgnoredFile("landing", file.name, "gone")) from None
        raise
    finally:
        os.close(directory)


def ensure_unchanged(fh: BinaryIO, file: FeedFile) -> None:
    """The open file still has the size and modification time it was listed with.

    Checked when the file is opened and again after it was read, before the batch commits: a
    file that changes in between is still being written, and loading it would load part of it.
    """
    if file.root is None:
        return
    info = os.fstat(fh.fileno())
    if (info.st_size, info.st_mtime_ns) != (file.size, file.modified_ns):
        raise SetAsideError(IgnoredFile("landing", file.name, "changing"))
