"""Streaming COPY from one connection into another: no table is ever held in memory."""

from __future__ import annotations

import psycopg
from psycopg import sql


def pipe_copy(
    source: psycopg.Connection,
    target: psycopg.Connection,
    copy_out: sql.Composable,
    copy_in: sql.Composable,
) -> int:
    """Stream COPY data from one connection into another; returns the rows written."""
    with source.cursor() as out_cur, target.cursor() as in_cur:
        with out_cur.copy(copy_out) as reader, in_cur.copy(copy_in) as writer:
            for block in reader:
                writer.write(block)
        return in_cur.rowcount
