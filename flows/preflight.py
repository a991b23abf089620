"""Before a command starts its flows: the databases it names answer, and the source holds the
tables extraction reads.

A person at the keyboard gets one message at once (failures.py), naming the connection, the
cause and what to do, instead of a flow whose tasks meet the same wall one after the other.
"""

from __future__ import annotations

from flows.failures import missing_tables
from flows.settings import Settings, get_settings
from flows.warehouse import connect_source, connect_warehouse, require_source


def check_warehouse(settings: Settings | None = None) -> None:
    """The warehouse answers (and runs a supported PostgreSQL)."""
    connect_warehouse(settings).close()


def check_source(settings: Settings | None = None, will_simulate: bool = False) -> None:
    """The source is configured, answers and holds every source table (unless the demo bank
    is about to be simulated into it)."""
    settings = settings or get_settings()
    require_source(settings)
    with connect_source(settings) as conn:
        if will_simulate:
            return
        missing = [
            table
            for table in settings.source_tables
            if not conn.execute(
                "select to_regclass(%s) is not null", (f"public.{table}",)
            ).fetchone()[0]
        ]
        if missing:
            raise missing_tables(conn, missing)
