"""Bad records are quarantined at the contract or flagged in silver, never in gold; a failing
audit stops the run."""

from __future__ import annotations

import psycopg
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import run_flow
from flows.simulate import simulate


def test_source_equals_gold_plus_flagged_plus_quarantined(bank_factory):
    bank = bank_factory("dirty")
    sim = simulate(bank.source_url, 20, scale=120, seed=11, bad_rate=0.03)
    assert sum(sim.bad_records.values()) > 0
    summary = run_flow()

    with psycopg.connect(bank.source_url) as conn:
        source = conn.execute(
            "select count(*), sum(amount) from transactions where status = 'booked'"
        ).fetchone()
    with psycopg.connect(bank.warehouse_url) as conn:
        gold = conn.execute("select count(*), sum(amount) from gold.fact_transactions").fetchone()
        invalid = conn.execute(
            "select count(*), sum(amount) from silver.current_transactions "
            "where not is_deleted and not is_valid and status = 'booked'"
        ).fetchone()
        rules = {
            r[0]
            for r in conn.execute(
                "select distinct unnest(dq_issues) from silver.current_transactions"
            )
        }
        quarantined = conn.execute(
            "select count(*), coalesce(sum((payload ->> 'amount')::numeric), 0) "
            "from quarantine.transactions "
            "where resolution is null and payload ->> 'status' = 'booked'"
        ).fetchone()
        quarantine_rules = {
            r[0] for r in conn.execute("select distinct unnest(rules) from quarantine.transactions")
        }
        accounts_quarantined = conn.execute("select count(*) from quarantine.accounts").fetchone()[
            0
        ]
        held_back = conn.execute(
            "select count(*) from silver.transactions where not is_valid"
        ).fetchone()[0]
        accounts_flagged = conn.execute(
            "select count(*) from silver.current_accounts where not is_valid"
        ).fetchone()[0]

    assert invalid[0] > 0 and quarantined[0] > 0
    assert source[0] == gold[0] + invalid[0] + quarantined[0]
    assert source[1] == gold[1] + invalid[1] + quarantined[1]
    # Row rules stop bad rows at the contract; rules across rows or tables are silver's.
    assert {"amount_out_of_range", "currency_unknown", "booking_date_in_future"} <= quarantine_rules
    assert {"duplicate", "account_invalid"} <= rules
    bad_accounts = sim.bad_records["invalid_sort_code"] + sim.bad_records["invalid_iban"]
    assert accounts_quarantined + accounts_flagged == bad_accounts
    assert summary.invalid_rows["transactions"] == held_back >= invalid[0]


def test_failing_audit_stops_the_run_with_step_and_cause(bank_factory):
    bank = bank_factory("orphan")
    simulate(bank.source_url, 2, scale=20, seed=3, bad_rate=0.0)
    with psycopg.connect(bank.source_url) as conn:
        # A booked transaction on an account the bank does not have: the link audit must catch it.
        conn.execute(
            """
            insert into transactions (transaction_id, account_id, reference, transaction_type,
                direction, amount, currency, status, transaction_date, booking_date,
                created_at, updated_at)
            values (999999999, 424242, 'ORPHAN-1', 'deposit', 'credit', 10.00, 'GBP', 'booked',
                    '2026-01-02', '2026-01-02', '2026-01-02 12:00+00', '2026-01-02 12:00+00')
            """
        )
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 1
    assert "sqlmesh run" in result.output
    assert "vault.link_account_transaction" in result.output
    assert "link_hub_keys_exist" in result.output and "1 bad row" in result.output
    # Quiet by default: no line per model and per audit from SQLMesh's console.
    assert "[1/1]" not in result.output and "audits ✔" not in result.output, result.output
    with psycopg.connect(bank.warehouse_url) as conn:
        assert conn.execute("select to_regclass('gold.fact_transactions')").fetchone()[
            0
        ] is None or (
            conn.execute(
                "select count(*) from gold.fact_transactions where transaction_id = 999999999"
            ).fetchone()[0]
            == 0
        )
