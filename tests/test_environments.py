"""SQLMesh virtual environments on real Postgres, real Prefect flows and real SQLMesh plans: a
change to a gold model is planned into staging without touching prod, diffed against prod,
then promoted as a virtual update (no physical table built); the analyst role reads prod's gold
after the promote and nothing else. `bankdw transform --environment dev` and SQLMesh by hand
(`bankdw sqlmesh plan <env>`, README "SQLMesh by hand") create an environment with no change."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import run_flow
from flows.settings import reset_settings
from flows.simulate import simulate

PROJECT = Path(__file__).resolve().parent.parent
runner = CliRunner()

OLD_COLUMN = "  d.status, /* open, dormant or closed */\n"
NEW_COLUMN = "  upper(d.status)::text as status, /* OPEN, DORMANT or CLOSED */\n"
# The model audits its statuses: the change states its new values there too.
OLD_AUDIT = "accepted_values(column := status, is_in := ('open', 'dormant', 'closed'))"
NEW_AUDIT = "accepted_values(column := status, is_in := ('OPEN', 'DORMANT', 'CLOSED'))"


@pytest.fixture(scope="module")
def bank(bank_factory, tmp_path_factory):
    """A bank run once into prod, on a copy of the project whose models a test may change."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT / "config.yaml", root / "config.yaml")
    for folder in ("models", "macros", "audits"):
        shutil.copytree(PROJECT / folder, root / folder)
    patch = pytest.MonkeyPatch()
    patch.setenv("PROJECT_ROOT", str(root))
    bank = bank_factory("envs")
    simulate(bank.source_url, 3, scale=30, seed=11, bad_rate=0.0)
    run_flow()
    yield bank, root
    patch.undo()
    reset_settings()


def scalar(url: str, query: str | sql.Composed, params: tuple | None = None) -> object:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def statuses(url: str, schema: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            sql.SQL("select distinct status from {}.dim_account").format(sql.Identifier(schema))
        ).fetchall()
    return {r[0] for r in rows}


PHYSICAL_TABLES = """
    select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname like 'sqlmesh\\_\\_%' and c.relkind in ('r', 'p', 'v', 'm')
"""


def as_analyst(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set role analyst")
        return conn.execute(query).fetchall()


def test_plan_staging_diff_promote(bank):
    bank, root = bank
    url = bank.warehouse_url
    prod_before = statuses(url, "gold")
    assert prod_before and all(s == s.lower() for s in prod_before)

    model = root / "models" / "gold" / "dim_account.sql"
    text = model.read_text()
    assert OLD_COLUMN in text and OLD_AUDIT in text
    model.write_text(text.replace(OLD_COLUMN, NEW_COLUMN).replace(OLD_AUDIT, NEW_AUDIT))

    planned = runner.invoke(app, ["plan", "staging"])
    assert planned.exit_code == 0, planned.output
    assert "gold.dim_account" in planned.output
    # Prod still answers the old way, staging the new; the rest of staging reads prod's tables.
    assert statuses(url, "gold") == prod_before
    assert statuses(url, "gold__staging") == {s.upper() for s in prod_before}
    accounts = scalar(url, "select count(*) from gold.dim_account")
    assert scalar(url, "select count(*) from gold__staging.dim_account") == accounts
    assert scalar(url, "select count(*) from gold__staging.fact_transactions") == scalar(
        url, "select count(*) from gold.fact_transactions"
    )

    diffed = runner.invoke(app, ["diff", "staging"])
    assert diffed.exit_code == 0, diffed.output
    assert "gold.dim_account" in diffed.output
    assert f"{accounts:,} changed" in diffed.output, diffed.output
    assert "status:" in diffed.output  # the column that differs, with its share of equal rows
    assert "gold.dim_customer" not in diffed.output  # models it does not reach are not diffed

    tables_before = scalar(url, PHYSICAL_TABLES)
    promoted = runner.invoke(app, ["promote"])
    assert promoted.exit_code == 0, promoted.output
    assert statuses(url, "gold") == {s.upper() for s in prod_before}
    assert scalar(url, PHYSICAL_TABLES) == tables_before  # a virtual update: nothing built

    # The analyst reads prod's gold after the promote, and nothing else.
    assert as_analyst(url, "select count(*) from gold.dim_account") == [(accounts,)]
    for denied in ("select 1 from gold__staging.dim_account", "select 1 from vault.hub_account"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_analyst(url, denied)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_analyst(url, "delete from gold.dim_account")

    # The next run keeps prod as promoted (no re-plan of files it already runs).
    run_flow()
    assert statuses(url, "gold") == {s.upper() for s in prod_before}


def test_promote_refuses_files_staging_was_not_planned_with(bank):
    bank, root = bank
    model = root / "models" / "gold" / "dim_account.sql"
    text = model.read_text()
    model.write_text(
        text.replace(
            "/* the primary holder today (the same on every version) */",
            "/* the primary holder (v3) */",
        )
    )
    try:
        refused = runner.invoke(app, ["promote"])
    finally:
        model.write_text(text)
    assert refused.exit_code == 1
    assert "not what staging was planned with" in refused.output
    assert "gold.dim_account" in refused.output


def test_staging_is_pinned_for_the_janitor(bank):
    from flows.transform import Transformation

    with Transformation("test") as transformation:
        config = transformation.context.config
    assert "staging" in config.pinned_environments
    assert config.plan.include_unmodified


def test_a_new_environment_without_change_is_created(bank):
    """`bankdw transform --environment dev` and, by hand, `bankdw sqlmesh plan <env>`."""
    bank, _ = bank
    url = bank.warehouse_url
    result = runner.invoke(app, ["transform", "--environment", "dev"])
    assert result.exit_code == 0, result.output
    assert scalar(url, "select count(*) from gold__dev.dim_account") == scalar(
        url, "select count(*) from gold.dim_account"
    )
    by_hand = runner.invoke(app, ["sqlmesh", "plan", "handmade", "--auto-apply", "--no-prompts"])
    assert by_hand.exit_code == 0, by_hand.output
    assert scalar(url, "select count(*) from vault__handmade.hub_account") == scalar(
        url, "select count(*) from vault.hub_account"
    )


def test_environment_names_are_checked(bank):
    result = runner.invoke(app, ["plan", "Staging; drop"])
    assert result.exit_code == 1
    assert "lower-case letters" in result.output
