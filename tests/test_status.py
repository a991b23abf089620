"""Status and observability on real Postgres, real Prefect flow runs and real SQLMesh: every run
leaves one ops.pipeline_runs row whose figures match ops.batches, ops.dq_results, ops.alerts and
ops.audit_results, and a Prefect table artifact with them; a failing run leaves a failed row; a
killed one shows as crashed; `bankdw status` names the runs, a stale source and a failed audit,
and exits non-zero for them; JSON log lines parse and carry the flow run id.

The tests of this module build on each other in file order, on one small bank (one SQLMesh plan
for the whole module)."""

from __future__ import annotations

import json
import logging
import time
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest
from typer.testing import CliRunner

from flows import logs
from flows.cli import app
from flows.pipeline import extract_all_flow, run_flow
from flows.runs import ARTIFACT_KEY, RunRecord
from flows.settings import get_settings, reset_settings
from flows.simulate import simulate
from flows.status import last_runs

runner = CliRunner()


def run_row(url: str, flow_run_id: str) -> dict:
    with psycopg.connect(url) as conn:
        cur = conn.execute("select * from ops.pipeline_runs where flow_run_id = %s", (flow_run_id,))
        rows = cur.fetchall()
        assert len(rows) == 1, rows  # one row per run
        return dict(zip([c.name for c in cur.description], rows[0], strict=True))


def rows_of(output: str) -> list[list[str]]:
    """The cells of every table row Rich printed."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in output.splitlines()
        if line.strip().startswith("│")
    ]


@pytest.fixture(scope="module")
def bank(bank_factory):
    """Two days of a small bank with a few bad records, run twice (the second finds nothing)."""
    bank = bank_factory("status")
    simulate(bank.source_url, 2, scale=20, seed=3, bad_rate=0.02)
    runs = []
    for _ in range(2):
        state = run_flow(return_state=True)
        assert state.is_completed(), state
        runs.append(str(state.state_details.flow_run_id))
    return bank, runs


def test_a_run_leaves_a_completed_row_whose_figures_match_the_ledger(bank):
    bank, (first, second) = bank
    row = run_row(bank.warehouse_url, first)
    with psycopg.connect(bank.warehouse_url) as conn:
        batches = conn.execute(
            "select count(*), sum(rows_in), sum(rows_loaded), sum(rows_quarantined), "
            "sum(rows_deleted) from ops.batches where flow_run_id = %s and status = 'committed'",
            (first,),
        ).fetchone()
        evaluated, failed = conn.execute(
            "select sum(evaluated), sum(failed) from ops.dq_results "
            "where batch_id in (select batch_id from ops.batches where flow_run_id = %s)",
            (first,),
        ).fetchone()
        alerts = conn.execute(
            "select count(*) from ops.alerts where flow_run_id = %s", (first,)
        ).fetchone()[0]
        audits = conn.execute(
            "select count(*) filter (where passed), count(*) filter (where not passed) "
            "from ops.audit_results where flow_run_id = %s",
            (first,),
        ).fetchone()
        fact_rows = conn.execute("select count(*) from gold.fact_transactions").fetchone()[0]
        hub_rows = conn.execute("select count(*) from vault.hub_customer").fetchone()[0]

    assert row["status"] == "completed" and row["flow_name"] == "bankdw-run"
    assert row["finished_at"] > row["started_at"] and row["error"] is None
    assert row["flow_run_name"]
    assert (
        row["batches"],
        row["rows_in"],
        row["rows_loaded"],
        row["rows_quarantined"],
        row["rows_deleted"],
    ) == batches
    assert row["rows_loaded"] > 0 and row["rows_quarantined"] > 0  # bad_rate: some were caught
    assert row["dq_checks"] == evaluated > 0
    assert row["dq_score"] == round(Decimal(100) * (evaluated - failed) / evaluated, 2) < 100
    assert row["alerts_raised"] == alerts
    # Every model's audits ran and passed, and were recorded one row per audit and model.
    assert (row["audits_passed"], row["audits_failed"]) == audits
    assert audits[0] > 20 and audits[1] == 0
    # SQLMesh's own row counts: the first run wrote every layer (at least what the tables hold).
    assert row["silver_rows"] > 0
    assert row["vault_rows"] >= hub_rows > 0
    assert row["gold_rows"] >= fact_rows > 0

    # The second run found nothing new: loaded nothing and wrote nothing, and still has its row.
    again = run_row(bank.warehouse_url, second)
    assert again["status"] == "completed" and again["run_id"] > row["run_id"]
    assert (again["rows_loaded"], again["silver_rows"], again["gold_rows"]) == (0, 0, 0)
    assert again["dq_score"] is None


def test_the_run_publishes_its_figures_as_a_table_artifact(bank):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    bank, (first, _) = bank
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(first)]))
        )
    (artifact,) = [a for a in artifacts if a.key == ARTIFACT_KEY]
    assert artifact.type == "table"
    data = artifact.data if isinstance(artifact.data, list) else json.loads(artifact.data)
    figures = {item["figure"]: item["value"] for item in data}
    row = run_row(bank.warehouse_url, first)
    assert figures["status"] == "completed"
    for name in ("rows_loaded", "rows_quarantined", "gold_rows", "audits_passed", "alerts_raised"):
        assert figures[name] == str(row[name]), name
    assert figures["dq_score"] == f"{row['dq_score']:.2f}"


def test_status_names_the_runs_and_exits_zero_when_all_is_well(bank):
    bank, runs = bank
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    names = {run_row(bank.warehouse_url, r)["flow_run_name"] for r in runs}
    for name in names:
        assert name in result.output
    assert "completed" in result.output
    # corebank delivered just now; the feeds never did (no landing folder for this bank).
    assert "fresh" in result.output and "never delivered" in result.output
    assert "every audit passed" in result.output
    # The open quarantine, per entity and rule, as `quarantine list` counts it.
    with psycopg.connect(bank.warehouse_url) as conn:
        rule, rows = conn.execute(
            "select rule, count(*) from quarantine.transactions, unnest(rules) as rule "
            "where resolution is null group by rule order by count(*) desc limit 1"
        ).fetchone()
    assert ["transactions", rule, f"{rows:,}"] in rows_of(result.output)


def test_a_stale_source_shows_and_fails_the_check(bank):
    bank, _ = bank
    with psycopg.connect(bank.warehouse_url) as conn:
        conn.execute("update ops.batches set finished_at = finished_at - interval '30 hours'")
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1
    (corebank,) = [cells for cells in rows_of(result.output) if cells[0] == "corebank"]
    assert corebank[-2:] == ["24", "stale"] and float(corebank[2]) > 24
    assert "corebank is stale" in result.output


def test_a_failing_run_leaves_a_failed_row_and_status_names_the_audit(bank):
    bank, _ = bank
    with psycopg.connect(bank.source_url) as conn:
        # A booked transaction on an account the bank does not have: the link audit fails.
        conn.execute(
            """
            insert into transactions (transaction_id, account_id, reference, transaction_type,
                direction, amount, currency, status, transaction_date, booking_date,
                created_at, updated_at)
            values (999999999, 424242, 'ORPHAN-1', 'deposit', 'credit', 10.00, 'GBP', 'booked',
                    '2026-01-02', '2026-01-02', now(), now())
            """
        )
    state = run_flow(return_state=True)
    assert state.is_failed()
    flow_run_id = str(state.state_details.flow_run_id)
    row = run_row(bank.warehouse_url, flow_run_id)
    assert row["status"] == "failed" and row["finished_at"] is not None
    assert "link_hub_keys_exist" in row["error"]
    assert row["rows_loaded"] == 1 and row["audits_failed"] >= 1
    with psycopg.connect(bank.warehouse_url) as conn:
        failed = conn.execute(
            "select model, audit, bad_rows from ops.audit_results "
            "where flow_run_id = %s and not passed",
            (flow_run_id,),
        ).fetchall()
        alerts = conn.execute(
            "select count(*), count(*) filter (where kind = 'audit_failed') from ops.alerts "
            "where flow_run_id = %s",
            (flow_run_id,),
        ).fetchone()
    assert ("vault.link_account_transaction", "link_hub_keys_exist", 1) in failed
    assert row["alerts_raised"] == alerts[0] and alerts[1] == 1

    result = runner.invoke(app, ["status", "--runs", "2"])
    assert result.exit_code == 1
    assert row["flow_run_name"] in result.output
    assert f"run {row['run_id']} failed" in result.output
    assert "link_hub_keys_exist" in result.output and "FAILED" in result.output
    assert "the last run (bankdw-run" in result.output


def test_a_killed_run_shows_as_crashed_never_as_running_or_completed(bank):
    bank, _ = bank
    killed = RunRecord("bankdw-run", "killed-run-id", "killed-run").start()
    with psycopg.connect(bank.warehouse_url) as conn:
        assert last_runs(conn, 1)[0].status == "running"  # its process holds the lock
    killed._conn.close()  # the process dies: its connection, and the lock, go
    deadline = time.monotonic() + 10
    while True:
        with psycopg.connect(bank.warehouse_url) as conn:
            shown = last_runs(conn, 1)[0]
        if shown.status != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert (shown.run_id, shown.status) == (killed.run_id, "crashed")
    assert "killed" in shown.error
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 1 and "crashed" in result.output

    # The next run's start writes the crash down.
    following = RunRecord("bankdw-run", "following-run-id", "following-run").start()
    following.finish("completed")
    with psycopg.connect(bank.warehouse_url) as conn:
        assert conn.execute(
            "select status from ops.pipeline_runs where run_id = %s", (killed.run_id,)
        ).fetchone() == ("crashed",)


def test_json_logs_carry_the_flow_run_id(bank, tmp_path, monkeypatch):
    bank, _ = bank
    monkeypatch.setenv("LOG_FORMAT", "json")
    reset_settings()
    root = logging.getLogger()
    level = root.level
    path = logs.setup(tmp_path, verbose=True, log_format=get_settings().log_format)
    try:
        state = extract_all_flow(return_state=True)
        logging.getLogger("bankdw").info("after the run")
    finally:
        logs.teardown()
        root.setLevel(level)
    assert state.is_completed()
    flow_run_id = str(state.state_details.flow_run_id)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    # Prefect's run loggers, and bankdw's own (which Prefect does not stamp: the filter does).
    in_run = [
        r
        for r in records
        if r["logger"].startswith(("prefect.flow_runs", "prefect.task_runs", "flows."))
    ]
    assert {"prefect.task_runs", "flows.runs"} <= {r["logger"] for r in in_run}, records
    assert in_run and all(r["flow_run_id"] == flow_run_id for r in in_run), in_run
    assert records[-1]["message"] == "after the run" and records[-1]["flow_run_id"] is None
    assert run_row(bank.warehouse_url, flow_run_id)["flow_name"] == "bankdw-extract"
