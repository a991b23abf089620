"""The analyst role on a warehouse built by `bankdw run`'s flow, tested as an analyst logs in (a
login role granted `analyst`): every gold relation readable, every other schema denied, no write
or DDL, no unmasked e-mail, phone or date of birth anywhere in gold, every example question of
sql/analyst_examples.sql answered. Gold and the other schemas are enumerated from the catalog, so
a new model is covered without a change here. Last, a plan that changes a gold model and adds
one is promoted, and the analyst still reads all of gold and nothing else (sqlmesh issue 5855
reports grants lost when a view is recreated). `bankdw init` creates the server roles."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from flows.cli import app
from flows.examples import load_examples
from flows.pgurl import parse_url
from flows.pipeline import run_flow
from flows.settings import reset_settings
from flows.simulate import simulate

PROJECT = Path(__file__).resolve().parent.parent
runner = CliRunner()
DAYS, SCALE, SEED = 10, 30, 5
# Relations a SELECT privilege applies to: tables, views, materialized views, partitioned and
# foreign tables, sequences.
RELKINDS = ("r", "v", "m", "p", "f", "S")
# Schemas of PostgreSQL itself, not of the warehouse.
SYSTEM_SCHEMAS = "nspname in ('pg_catalog', 'information_schema') or nspname ~ '^pg_(toast|temp_)'"


@pytest.fixture(scope="module")
def bank(bank_factory, tmp_path_factory) -> Iterator[tuple[str, str, Path]]:
    """A warehouse built by the run flow on a copy of the project (the last test changes its
    models), and the URL of `alice`, a login role in the analyst role, as a person gets one."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(PROJECT / "config.yaml", root / "config.yaml")
    for folder in ("models", "macros", "audits"):
        shutil.copytree(PROJECT / folder, root / folder)
    patch = pytest.MonkeyPatch()
    patch.setenv("PROJECT_ROOT", str(root))
    bank = bank_factory("analyst")
    simulate(bank.source_url, DAYS, scale=SCALE, seed=SEED, bad_rate=0.0)
    run_flow()
    alice = f"alice_{os.getpid()}"
    password = secrets.token_urlsafe(16)
    with psycopg.connect(bank.warehouse_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(alice)))
        admin.execute(
            sql.SQL("create role {} login password {} in role analyst").format(
                sql.Identifier(alice), sql.Literal(password)
            )
        )
    params = parse_url(bank.warehouse_url)
    alice_url = type(params)(params.host, params.port, alice, password, params.database).url()
    yield bank.warehouse_url, bank.source_url, alice_url
    with psycopg.connect(bank.warehouse_url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(alice)))
    patch.undo()
    reset_settings()


def relations(url: str, where: str) -> list[tuple[str, str]]:
    """(schema, name) of every relation a SELECT grant applies to, in the schemas `where` picks."""
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select n.nspname, c.relname from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            f" where c.relkind = any(%s) and ({where}) order by 1, 2",
            (list(RELKINDS),),
        ).fetchall()


def schemas(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"select nspname from pg_namespace where not ({SYSTEM_SCHEMAS})")
        return sorted(name for (name,) in rows)


def ident(schema: str, name: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))


def assert_reads_gold_and_nothing_else(warehouse: str, alice: str) -> None:
    gold = relations(warehouse, "n.nspname = 'gold'")
    others = relations(warehouse, f"n.nspname <> 'gold' and not ({SYSTEM_SCHEMAS})")
    with (
        psycopg.connect(warehouse) as admin,
        psycopg.connect(alice, autocommit=True) as analyst,
    ):
        for schema, name in gold:
            query = sql.SQL("select count(*) from {}").format(ident(schema, name))
            assert analyst.execute(query).fetchone() == admin.execute(query).fetchone(), name
        for schema in schemas(warehouse):
            if schema == "gold":
                continue
            usage, create = analyst.execute(
                "select has_schema_privilege(%s, 'usage'), has_schema_privilege(%s, 'create')",
                (schema, schema),
            ).fetchone()
            assert not create, schema
            # PostgreSQL lets every role use `public`; the warehouse keeps nothing there (below).
            assert not usage or schema == "public", schema
        for schema, name in others:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                analyst.execute(sql.SQL("select 1 from {} limit 1").format(ident(schema, name)))
    assert all(schema != "public" for schema, _ in others)


def test_the_analyst_reads_every_gold_relation_and_nothing_else(bank):
    warehouse, _, alice = bank
    names = {name for _, name in relations(warehouse, "n.nspname = 'gold'")}
    assert {"dim_customer", "dim_account", "fact_transactions"} <= names
    present = set(schemas(warehouse))
    assert {"raw", "quarantine", "ops", "silver", "vault", "sqlmesh"} <= present
    assert {"sqlmesh__gold", "sqlmesh__silver", "sqlmesh__vault"} <= present
    assert_reads_gold_and_nothing_else(warehouse, alice)


WRITES = (
    "insert into gold.dim_account (account_id) values (-1)",
    "update gold.dim_account set status = 'closed'",
    "delete from gold.dim_account",
    "drop view gold.dim_account",
    "alter view gold.dim_account rename to gone",
    "create table gold.mine (id int)",
    "create view gold.mine as select 1 as id",
    "create table public.mine (id int)",
    "create schema mine",
    "comment on view gold.dim_account is 'mine'",
)


@pytest.mark.parametrize("statement", WRITES)
def test_the_analyst_may_not_write_nor_change_anything(bank, statement):
    _, _, alice = bank
    with (
        psycopg.connect(alice, autocommit=True) as analyst,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        analyst.execute(statement)


# Personal data the source holds, and how it could leak into gold.
EMAIL = re.compile(r"([a-z0-9._%+-]+)@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
PHONE = re.compile(r"\+?[0-9][0-9 ()\-]{6,}[0-9]")
PHONE_DIGITS = 9  # compared on their last 9 digits: the same number with or without +44 / 0


def digits(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


def personal_data(source: str, warehouse: str) -> tuple[set[str], set[str], set[tuple[int, date]]]:
    """E-mail local parts, phone numbers (last digits) and (customer, date of birth): from the
    source's customers, and every version raw holds (an e-mail changed since is still personal)."""
    query = sql.SQL("select customer_id::bigint, email, phone, date_of_birth::date from {}")
    with psycopg.connect(source) as conn:
        rows = conn.execute(query.format(sql.Identifier("customers"))).fetchall()
    with psycopg.connect(warehouse) as conn:
        rows += conn.execute(query.format(ident("raw", "customers"))).fetchall()
    locals_ = {email.lower().split("@")[0] for _, email, _, _ in rows if email}
    phones = {
        digits(p)[-PHONE_DIGITS:] for _, _, p, _ in rows if p and len(digits(p)) >= PHONE_DIGITS
    }
    births = {(int(c), dob) for c, _, _, dob in rows if dob}
    return locals_, phones, births


def leaks(
    url: str, schema: str, pii: tuple[set[str], set[str], set[tuple[int, date]]]
) -> list[str]:
    """Every value of every text and date column of every relation in `schema` that is a source
    e-mail (its local part), phone number, or a customer's own date of birth, read through `url`."""
    locals_, phones, births = pii
    found = []
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            """
            select c.table_name, c.column_name, c.data_type
            from information_schema.columns c
            where c.table_schema = %s
              and (c.data_type in ('text', 'character varying', 'character', 'json', 'jsonb')
                   or c.data_type = 'date')
            order by 1, 2
            """,
            (schema,),
        ).fetchall()
        customer_keys = {
            (t, c)
            for t, c in conn.execute(
                "select table_name, column_name from information_schema.columns "
                "where table_schema = %s and (column_name = 'customer_id' "
                "or column_name like '%%\\_customer\\_id')",
                (schema,),
            )
        }
        for table, column, data_type in columns:
            where = f"{schema}.{table}.{column}"
            if data_type == "date":
                # A date is personal next to the customer it belongs to: a calendar or booking
                # date that happens to equal someone's birthday is not.
                for _, key in sorted(k for k in customer_keys if k[0] == table):
                    pairs = conn.execute(
                        sql.SQL(
                            "select distinct {}::bigint, {} from {} where {} is not null"
                        ).format(
                            sql.Identifier(key),
                            sql.Identifier(column),
                            ident(schema, table),
                            sql.Identifier(column),
                        )
                    ).fetchall()
                    found += [
                        f"{where}: date of birth of {c}" for c, d in pairs if (c, d) in births
                    ]
                continue
            values = conn.execute(
                sql.SQL("select distinct {}::text from {} where {} is not null").format(
                    sql.Identifier(column), ident(schema, table), sql.Identifier(column)
                )
            ).fetchall()
            for (value,) in values:
                lowered = value.lower()
                found += [
                    f"{where}: e-mail {m.group(0)}"
                    for m in EMAIL.finditer(lowered)
                    if m.group(1) in locals_
                ]
                if lowered in locals_:
                    found.append(f"{where}: e-mail local part {value}")
                found += [
                    f"{where}: phone {m.group(0)}"
                    for m in PHONE.finditer(value)
                    if len(digits(m.group(0))) >= PHONE_DIGITS
                    and digits(m.group(0))[-PHONE_DIGITS:] in phones
                ]
    return found


def test_no_unmasked_email_phone_or_date_of_birth_in_gold(bank):
    warehouse, source, alice = bank
    pii = personal_data(source, warehouse)
    assert all(len(part) > 20 for part in pii), [len(p) for p in pii]
    # The scan finds personal data where it is (silver's customers, read by the pipeline's
    # role): every kind of it, so that an empty result in gold means something.
    in_silver = leaks(warehouse, "silver", pii)
    for kind in ("e-mail", "phone", "date of birth"):
        assert any(f": {kind}" in hit for hit in in_silver), kind
    # Gold, as the analyst reads it: none.
    assert leaks(alice, "gold", pii) == []
    # And what gold shows instead.
    with psycopg.connect(alice) as analyst:
        masked = analyst.execute(
            "select email_masked, phone_last4, age_band from gold.dim_customer where is_current"
        ).fetchall()
    assert masked and all(
        e is None or re.fullmatch(r"[a-z0-9]\*\*\*@[a-z0-9.-]+", e) for e, _, _ in masked
    )
    assert all(p is None or re.fullmatch(r"[0-9]{4}", p) for _, p, _ in masked)
    bands = {"<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
    assert {b for _, _, b in masked} <= bands and len({b for _, _, b in masked}) >= 3


@pytest.fixture(scope="module")
def default_analyst(default_bank_60_days) -> Iterator[str]:
    """A login role in `analyst` on the session's shared default bank (60 days, with feeds and
    AML cases): the example questions are asked of the data they are written for."""
    url = default_bank_60_days.warehouse_url
    bob, password = f"bob_{os.getpid()}", secrets.token_urlsafe(16)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(bob)))
        admin.execute(
            sql.SQL("create role {} login password {} in role analyst").format(
                sql.Identifier(bob), sql.Literal(password)
            )
        )
    params = parse_url(url)
    yield type(params)(params.host, params.port, bob, password, params.database).url()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(bob)))


@pytest.mark.parametrize("example", load_examples(), ids=lambda e: e.name)
def test_every_example_question_is_answered_as_the_analyst(default_analyst, example, capsys):
    with psycopg.connect(default_analyst) as analyst:
        cur = analyst.execute(example.query)
        rows = cur.fetchall()
        columns = tuple(c.name for c in cur.description)
    assert columns == example.columns
    assert rows, f"{example.name}: no rows"
    assert all(any(v is not None for v in row) for row in rows)
    with capsys.disabled():  # the answers on the default simulation, for the record
        print(f"\n{example.name}: {len(rows)} rows; first: {rows[:3]}")


def test_the_examples_file_is_a_dozen_questions_or_more():
    examples = load_examples()
    assert len(examples) >= 12
    assert all(e.question.endswith("?") for e in examples)


def test_bankdw_init_creates_the_server_roles(bank, new_database, monkeypatch):
    """On a server, as an administrator: the analyst and pipeline roles, from sql/roles, again
    and again; a role that may not create roles gets one line saying what to do."""
    warehouse = new_database("wh_init")
    monkeypatch.setenv("WAREHOUSE_URL", warehouse)
    reset_settings()
    try:
        first = runner.invoke(app, ["init"])
        again = runner.invoke(app, ["init", "--pipeline-password"], input="s3cret-pw\ns3cret-pw\n")
        with psycopg.connect(warehouse, autocommit=True) as admin:
            role = admin.execute(
                "select rolsuper, rolcreatedb, rolcreaterole, rolcanlogin,"
                " rolpassword like 'SCRAM-SHA-256$%%' from pg_authid where rolname = %s",
                ("bankdw_pipeline",),
            ).fetchone()
            database = admin.execute("select current_database()").fetchone()[0]
            privileges = admin.execute(
                "select has_database_privilege('bankdw_pipeline', %s, 'create'),"
                " has_database_privilege('analyst', %s, 'connect'),"
                " has_database_privilege('analyst', %s, 'create')",
                (database, database, database),
            ).fetchone()
            weak = f"weak_{os.getpid()}"
            admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(weak)))
            admin.execute(sql.SQL("create role {} login").format(sql.Identifier(weak)))
        params = parse_url(warehouse)
        monkeypatch.setenv(
            "WAREHOUSE_URL",
            type(params)(params.host, params.port, weak, "", params.database).url(),
        )
        reset_settings()
        refused = runner.invoke(app, ["init", "--pipeline-password"], input="x\nx\n")
        not_owner = runner.invoke(app, ["init"])
    finally:
        monkeypatch.undo()
        reset_settings()
        with psycopg.connect(warehouse, autocommit=True) as admin:
            admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(weak)))
    assert first.exit_code == 0, first.output
    assert "role analyst: exists" in first.output  # the module's run made it
    assert "role bankdw_pipeline:" in first.output
    assert again.exit_code == 0, again.output
    assert "role bankdw_pipeline: exists" in again.output
    assert "s3cret-pw" not in again.output.replace("password for bankdw_pipeline", "")
    assert role == (False, False, False, True, True)  # no powers; a login with a SCRAM hash
    assert privileges == (True, True, False)
    assert refused.exit_code == 1, refused.output
    assert f"role {weak} may not create roles" in refused.output
    assert not_owner.exit_code == 1
    assert "run `bankdw init` as the warehouse database's owner" in not_owner.output
    for result in (refused, not_owner):
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output


ADDED_COLUMN = "  d.status, /* open, dormant or closed */\n"
WITH_NEW_COLUMN = ADDED_COLUMN + "  upper(d.status) as status_code, /* OPEN, DORMANT or CLOSED */\n"
NEW_MODEL = """/* Accounts per status: a model added by a plan, for the grants test. */
MODEL (name gold.accounts_per_status, kind FULL, grain status);
select
  status, /* account status */
  count(*) as accounts /* accounts with it */
from gold.dim_account
group by status
"""


def test_grants_survive_a_plan_that_changes_gold(bank):
    """Change gold.dim_account (a column added: SQLMesh builds a new table and recreates prod's
    view on it) and add a model, plan into staging and promote, as bankdw does: the analyst
    reads every gold relation, the new column and the new model, and still nothing else
    (gold__staging now exists, and new physical tables in sqlmesh__gold)."""
    warehouse, _, alice = bank
    root = Path(os.environ["PROJECT_ROOT"])
    model = root / "models" / "gold" / "dim_account.sql"
    text = model.read_text()
    assert ADDED_COLUMN in text
    model.write_text(text.replace(ADDED_COLUMN, WITH_NEW_COLUMN))
    (root / "models" / "gold" / "accounts_per_status.sql").write_text(NEW_MODEL)

    def view_definition() -> str:
        with psycopg.connect(warehouse) as conn:
            return conn.execute("select pg_get_viewdef('gold.dim_account'::regclass)").fetchone()[0]

    before = view_definition()
    planned = runner.invoke(app, ["plan", "staging"])
    assert planned.exit_code == 0, planned.output
    promoted = runner.invoke(app, ["promote"])
    assert promoted.exit_code == 0, promoted.output
    assert view_definition() != before  # prod's view now reads another physical table

    assert "gold__staging" in schemas(warehouse)
    with psycopg.connect(alice) as analyst:
        codes = analyst.execute("select distinct status_code from gold.dim_account").fetchall()
        per_status = analyst.execute(
            "select sum(accounts) from gold.accounts_per_status"
        ).fetchone()
        accounts = analyst.execute("select count(*) from gold.dim_account").fetchone()
    assert codes and all(c == c.upper() for (c,) in codes)
    assert per_status == accounts
    assert_reads_gold_and_nothing_else(warehouse, alice)
