"""Messages a person can act on: one line naming the connection, the cause and what to do, at
once; no error printed by a run that succeeded; quiet by default, detail with --verbose."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.failures import ConnectionFailure
from flows.pgurl import PgParams, parse_url
from flows.retries import retry_unless_refused
from flows.settings import reset_settings
from flows.warehouse import connect_warehouse

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def bankdw(*args: str, tmp_path: Path, **env: str) -> tuple[int, str, float]:
    """Run a real `bankdw` process (its default retries); returns its code, output and seconds."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PREFECT_API_URL", "PREFECT_HOME", "WAREHOUSE_URL", "SOURCE_URL")
    }
    environ.update(WAREHOUSE_DIR=str(tmp_path / "data"), **env)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def with_password(url: str) -> PgParams:
    params = parse_url(url)
    return params if params.password else dataclasses.replace(params, password="pw-secret-9")


@pytest.fixture(scope="module")
def servers(new_database) -> dict[str, str]:
    """A warehouse, a source with the core bank's tables, and an empty source."""
    source = new_database("src_msg")
    with psycopg.connect(source) as conn:
        conn.execute((PROJECT_ROOT / "sql" / "source" / "corebank.sql").read_text())
    return {"warehouse": new_database("wh_msg"), "source": source, "empty": new_database("empty")}


def case_bad_login(servers: dict[str, str]) -> tuple[dict[str, str], str, str]:
    # A role the server does not know: refused at login like a wrong password (and on a server
    # with passwords, the same words as a wrong password).
    params = dataclasses.replace(with_password(servers["warehouse"]), user="nobody_here")
    return {"WAREHOUSE_URL": params.url(), "SOURCE_URL": servers["source"]}, "warehouse", "user"


def case_missing_database(servers: dict[str, str]) -> tuple[dict[str, str], str, str]:
    params = dataclasses.replace(with_password(servers["warehouse"]), database="no_such_db")
    return {"WAREHOUSE_URL": params.url(), "SOURCE_URL": servers["source"]}, "warehouse", "create"


def case_server_down(servers: dict[str, str]) -> tuple[dict[str, str], str, str]:
    params = PgParams("127.0.0.1", 1, "bankdw", "pw-secret-9", "corebank")  # nothing listens
    return {"WAREHOUSE_URL": servers["warehouse"], "SOURCE_URL": params.url()}, "source", "start"


def case_missing_table(servers: dict[str, str]) -> tuple[dict[str, str], str, str]:
    params = with_password(servers["empty"])
    return {"WAREHOUSE_URL": servers["warehouse"], "SOURCE_URL": params.url()}, "source", "point"


@pytest.mark.parametrize(
    "case", [case_bad_login, case_missing_database, case_server_down, case_missing_table]
)
def test_a_failure_that_cannot_heal_ends_in_one_message_at_once(servers, tmp_path, case):
    """Point 13: these printed 190-400 lines of tracebacks and retried for 30-40 s, without
    saying whether the warehouse or the source failed. Now: one message naming the connection
    (host and database, no password), its cause and what to do next, within seconds."""
    env, role, hint_word = case(servers)
    failing = parse_url(env["WAREHOUSE_URL" if role == "warehouse" else "SOURCE_URL"])
    code, output, seconds = bankdw("extract", tmp_path=tmp_path, **env)
    assert code == 1, output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert f"the {role} ({failing.describe()})" in errors[0], errors[0]
    hints = [line for line in output.splitlines() if line.startswith("next:")]
    assert len(hints) == 1 and hint_word in hints[0], output
    assert len(output.splitlines()) <= 4, output  # the targets, the error, what to do
    assert "pw-secret-9" not in output and (not failing.password or failing.password not in output)
    assert seconds < 20, f"{seconds:.1f} s: retried?\n{output}"


def test_failures_that_cannot_heal_are_not_retried_and_others_are(servers):
    """Point 13, in a flow (a deployment has no CLI in front): Prefect retries a server that
    is down, never a missing database or a refused login."""

    class Failed:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def result(self):  # type: ignore[no-untyped-def]
            raise self.error

    def failure(url: str) -> ConnectionFailure:
        from flows.settings import Settings

        with pytest.raises(ConnectionFailure) as caught:
            connect_warehouse(Settings(warehouse_url=url, source_url=url))
        return caught.value

    missing = failure(dataclasses.replace(parse_url(servers["warehouse"]), database="nope").url())
    assert "warehouse" in str(missing) and 'database "nope" does not exist' in str(missing)
    assert retry_unless_refused(None, None, Failed(missing)) is False
    down = failure("postgresql://x:y@127.0.0.1:1/db")
    assert retry_unless_refused(None, None, Failed(down)) is True


def test_gx_knows_the_iban_expectation_in_a_fresh_process(tmp_path):
    """Point 14: every process after the first that loaded feed files (or replayed quarantine)
    printed an ERROR with a traceback: GX read the stored accounts suite before our IBAN
    expectation was registered. A fresh process now logs nothing."""
    import pandas as pd

    from flows.quality.validate import ContractValidator

    root = tmp_path / "gx"
    frame = {
        "interaction_id": "1",
        "customer_id": "1",
        "channel": "app",
        "interaction_type": "enquiry",
        "sentiment": "0.5",
        "occurred_at": "2026-01-01T10:00:00Z",
    }
    first = ContractValidator(root)  # what a first run leaves behind
    first.validate("interactions", pd.DataFrame([frame]))
    first.build_docs()  # saves every contract's suite, the accounts one (IBANs) included
    script = (
        "import sys, pathlib, pandas as pd\n"
        "from flows.quality.validate import ContractValidator\n"
        "v = ContractValidator(pathlib.Path(sys.argv[1]))\n"
        f"v.validate('interactions', pd.DataFrame([{frame!r}]))\n"
        "v.build_docs()  # as `bankdw run` does after loading feed files\n"
        "print('validated')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(root)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "validated" in done.stdout, done.stderr
    assert "valid_iban" not in done.stderr, done.stderr
    assert "ERROR" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_no_runtime_dir_warning(tmp_path):
    """Point 16: every command that touched the embedded server warned `RuntimeDirWarning:
    XDG_RUNTIME_DIR is not set` (pgserver's import, through platformdirs)."""
    environ = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    environ.pop("WAREHOUSE_URL", None)
    environ["WAREHOUSE_DIR"] = str(tmp_path / "data")
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "db", "stop"],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "not running" in done.stdout
    assert "XDG_RUNTIME_DIR" not in done.stderr and "Warning" not in done.stderr, done.stderr


def test_quarantine_samples_show_the_key_before_the_payload_is_cut(bank_factory):
    """Point 16: samples were the payload's first 160 characters, often cut before the row's
    key. Now the key comes first; --verbose shows the whole payload."""
    from flows.quality.quarantine import RejectedRow, ensure_quarantine_table, insert_rejected

    bank = bank_factory("samples")
    payload = {
        "order_id": "ORD-KEY-77",
        "updated_at": "2026-01-02T10:00:00Z",
        "channel": "x" * 300 + "-END",  # sorts before order_id in jsonb: the cut used to hit it
        "customer_id": "1",
    }
    with psycopg.connect(bank.warehouse_url) as conn:
        conn.execute("create schema if not exists quarantine")
        ensure_quarantine_table(conn, "orders")
        insert_rejected(
            conn, "orders", 1, "crm", [RejectedRow(payload, ["channel_unknown"], 2)], "o.csv"
        )
    runner = CliRunner()
    result = runner.invoke(app, ["quarantine", "list", "--entity", "orders"])
    assert result.exit_code == 0, result.output
    assert "order_id=ORD-KEY-77" in result.output
    assert "-END" not in result.output
    verbose = runner.invoke(app, ["--verbose", "quarantine", "list", "--entity", "orders"])
    assert "order_id=ORD-KEY-77" in verbose.output and "x" * 300 + "-END" in verbose.output
    reset_settings()
