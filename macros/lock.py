"""The guard every SQLMesh plan and run passes first (config.yaml `before_all`)."""

from __future__ import annotations

import os

from sqlglot import exp
from sqlmesh import macro


@macro()
def sqlmesh_lock_holder(evaluator) -> exp.Expression:  # type: ignore[no-untyped-def]
    """Who, in this process, holds the warehouse's SQLMesh lock (flows/sqlmesh_lock.py sets it).

    Rendered when the statement runs, not when it is planned: a plain `sqlmesh run` renders ''
    and `ops.assert_sqlmesh_lock` stops it.
    """
    return exp.Literal.string(os.environ.get("BANKDW_SQLMESH_LOCK_HOLDER", ""))
