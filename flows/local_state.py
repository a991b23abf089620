"""Local state on this machine (`.warehouse/` or WAREHOUSE_DIR) is readable by its owner only.

It holds personal data: GX validation results keep the rows that failed (names, IBANs), Data Docs
render them, Prefect's database keeps task results, the landing folder holds the feed files, the
log holds error messages. A bankdw command creates folders 0700 and files 0600 (its umask, which
the servers it starts inherit), and closes a data folder that an older bankdw left open.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077


def private_umask() -> int:
    """Make this process create owner-only files and folders; returns the previous umask."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path, embedded_server: bool = False) -> Path:
    """Create `path` owner-only, or make it so if it is ours and open to others.

    Run as root, the embedded server runs as its own user (`pgserver`), which must traverse the
    data folder to reach `pgdata`: pgserver opens that folder (0755) and it is left so; the
    folders inside it stay owner-only.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if embedded_server and os.geteuid() == 0:
        return path
    status = path.stat()
    if status.st_uid == os.geteuid() and status.st_mode & 0o077:
        path.chmod(0o700)
    return path
