"""Secrets and personal data: no password on a command line, local state readable by its owner
only, GX validation results (which hold the failing rows) kept within a bound."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.pgurl import parse_url
from flows.settings import reset_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def open_to_others(folder: Path) -> list[str]:
    """Paths under `folder` (itself included) that a user other than the owner could read."""
    paths = [folder, *folder.rglob("*")]
    return [
        f"{p} {stat.filemode(p.lstat().st_mode)}"
        for p in paths
        if not p.is_symlink() and p.lstat().st_mode & 0o077
    ]


def test_db_psql_keeps_the_password_off_its_command_line(new_database, tmp_path):
    """Point 11: psql got the whole URL, password included, as an argument, which every user of
    the machine can read with `ps`. Now the password travels in psql's environment."""
    params = parse_url(new_database("wh_psql"))
    if not params.password:  # the embedded test server trusts its socket: any password does
        params = dataclasses.replace(params, password="pw-not-for-ps")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    environ.update(WAREHOUSE_URL=params.url(), WAREHOUSE_DIR=str(tmp_path / "data"))
    # psql reads its commands from stdin; the sleep keeps it running while we look at it.
    script = tmp_path / "script.sql"
    script.write_text("select pg_sleep(2);\nselect 'connected' || '!';\n")
    with script.open("rb") as stdin:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "db", "psql"],
            cwd=PROJECT_ROOT,
            env=environ,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    seen: list[list[str]] = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            command_line = psutil.Process(proc.pid).cmdline()
        except psutil.Error:
            break
        seen.append(command_line)
        time.sleep(0.02)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output
    assert "connected!" in output
    psql_lines = [line for line in seen if any("psql" in part for part in line)]
    assert psql_lines, f"psql was never seen running: {seen[-3:]}"
    for line in psql_lines:
        assert params.password not in " ".join(line), line


def test_local_state_is_owner_only_and_gx_results_are_bounded(bank_factory, tmp_path, monkeypatch):
    """Point 12: GX results (with the failing rows), landing files and the rest of .warehouse
    were created readable by every user, and GX kept every validation result for ever. Now
    folders are 0700, files 0600, and GX keeps GX_RESULTS_KEPT results."""
    bank = bank_factory("private")
    data_dir = tmp_path / "state"  # not there yet: the command creates it
    monkeypatch.setenv("WAREHOUSE_DIR", str(data_dir))
    monkeypatch.setenv("LANDING_DIR", str(data_dir / "landing"))
    monkeypatch.setenv("GX_RESULTS_KEPT", "2")
    reset_settings()
    runner = CliRunner()
    try:
        simulated = runner.invoke(
            app, ["simulate", "--days", "2", "--scale", "100", "--source-url", bank.source_url]
        )
        assert simulated.exit_code == 0, simulated.output
        extracted = runner.invoke(app, ["extract"])
        assert extracted.exit_code == 0, extracted.output
    finally:
        reset_settings()

    assert "orders" in extracted.output  # the six feed files were loaded, each validated by GX
    assert len(list((data_dir / "landing").rglob("*.*"))) == 6
    results = list((data_dir / "gx").rglob("uncommitted/validations/**/*.json"))
    assert len(results) == 2, results
    assert open_to_others(data_dir) == []


@pytest.mark.parametrize("kept", [0, 3])
def test_gx_keeps_the_newest_results_and_their_pages_only(tmp_path, kept):
    """Point 12: the bound holds for Data Docs too: a page never outlives its result."""
    import pandas as pd

    from flows.quality.validate import ContractValidator

    validator = ContractValidator(tmp_path / "gx", results_kept=100)
    frame = pd.DataFrame(
        [
            {
                "interaction_id": "1",
                "customer_id": "1",
                "channel": "app",
                "interaction_type": "enquiry",
                "sentiment": "0.5",
                "occurred_at": "2026-01-01T10:00:00Z",
            }
        ]
    )
    for _ in range(5):
        validator.validate("interactions", frame)
    validator.build_docs()
    everything = validator.stored_results()
    assert len(everything) == 5
    site = Path(validator.context.root_directory) / "uncommitted" / "data_docs" / "local_site"
    assert len(list((site / "validations").rglob("*.html"))) == 5

    validator.results_kept = kept
    validator.build_docs()
    assert validator.stored_results() == everything[len(everything) - kept :]
    assert len(list((site / "validations").rglob("*.html"))) == kept
