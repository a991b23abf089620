"""The `bankdw` command's own behaviour: argument errors, one-off queries, URLs."""

from __future__ import annotations

import psycopg
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_simulate_rejects_bad_arguments():
    result = runner.invoke(app, ["simulate", "--days", "0"])
    assert result.exit_code == 2
    assert "--days" in result.output

    result = runner.invoke(app, ["simulate", "--days", "1", "--bad-rate", "0.9"])
    assert result.exit_code == 2
    assert "--bad-rate" in result.output

    result = runner.invoke(app, ["simulate", "--days", "1", "--aml-cases", "-1"])
    assert result.exit_code == 2
    assert "--aml-cases" in result.output


def test_simulate_never_writes_to_a_source_named_by_source_url(bank_factory):
    bank = bank_factory("cli_guard")
    result = runner.invoke(app, ["simulate", "--days", "1"])
    assert result.exit_code == 1
    assert "never writes" in result.output
    with psycopg.connect(bank.source_url) as conn:
        assert conn.execute("select to_regclass('public.customers')").fetchone()[0] is None


def test_simulate_into_an_explicit_database_and_query_it(bank_factory):
    bank = bank_factory("cli_sql")
    result = runner.invoke(
        app, ["simulate", "--days", "2", "--scale", "10", "--source-url", bank.source_url]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["sql", "--source", "select count(*) as customers from customers"])
    assert result.exit_code == 0, result.output
    assert "customers" in result.output
    with psycopg.connect(bank.source_url) as conn:
        (count,) = conn.execute("select count(*) from customers").fetchone()
    assert str(count) in result.output


def test_simulate_plants_aml_cases_as_asked_and_none_with_zero(bank_factory, new_database):
    bank_factory("cli_aml")  # an embedded warehouse for the command; the sources are our own
    planted = {}
    for rate in ("0", "100"):
        url = new_database(f"src_cli_aml_{rate}")
        args = ["simulate", "--days", "6", "--scale", "200", "--aml-cases", rate]
        result = runner.invoke(app, [*args, "--source-url", url])
        assert result.exit_code == 0, result.output
        with psycopg.connect(url) as conn:
            planted[rate] = conn.execute("select count(*) from sim_aml_cases").fetchone()[0]
            assert conn.execute("select count(*) from account_balances").fetchone()[0] > 200
    assert planted["0"] == 0
    assert planted["100"] > 0


def test_sql_reports_a_bad_query_clearly(bank_factory):
    bank_factory("cli_bad_sql")
    result = runner.invoke(app, ["sql", "select * from no_such_table"])
    assert result.exit_code == 1
    assert "no_such_table" in result.output


def test_sql_piped_keeps_every_character_of_a_wide_row(bank_factory):
    """Point 16: piped, tables were squeezed to 80 columns, cutting and folding values."""
    bank_factory("cli_wide")
    result = runner.invoke(app, ["sql", "select repeat('x', 150) || '-END' as wide, 42 as n"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "-END" in line]
    assert len(lines) == 1 and "x" * 150 + "-END" in lines[0] and "42" in lines[0], result.stdout


def test_db_url_prints_the_warehouse_url(bank_factory):
    bank = bank_factory("cli_url")
    result = runner.invoke(app, ["db", "url"])
    assert result.exit_code == 0
    assert result.output.strip() == bank.warehouse_url
    result = runner.invoke(app, ["db", "url", "--source"])
    assert result.output.strip() == bank.source_url
