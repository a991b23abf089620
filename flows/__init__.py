"""bankdw: an open data warehouse for a retail bank (Prefect, SQLMesh, Postgres)."""

import os

# These machines have no internet: keep every tool's telemetry off before any of them is imported.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("SQLMESH__DISABLE_ANONYMIZED_ANALYTICS", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
