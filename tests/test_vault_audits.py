"""The vault's audits are blocking: each one stops the run that would write what it guards
against, names itself and the model, and nothing that depends on the model (gold) is built for
that interval.

One small warehouse is built once (a few customers, an account, a holding, a transaction) and kept
as a template database; each case runs on a fresh copy of it under the same name (SQLMesh's state
names the database), corrupts it the way its audit guards against, publishes the next batch and
runs the real transformation, a day later.

Rows written before a run cannot reach an audit by themselves: SQLMesh deletes an interval's rows
before writing it, and audits read the interval (docs/data-vault.md, "Audits"). So each corruption
sits where the model's load cannot see it but the audit can: outside the interval (a hub row
stamped in the future, a satellite row of an earlier load, a period that began earlier), in what
the model reads (a hub row deleted, publication stamps a microsecond apart), or, for the PIT,
whose pointers are read from the satellites as they are written and so cannot dangle through any
stored row, in the write itself (a trigger that shifts one pointer, as a faulty load would).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlglot import exp

from flows.settings import reset_settings
from flows.transform import TransformError, model_name
from flows.warehouse import PgParams, parse_url
from macros.hashing import _hash
from tests.vault_helpers import ScenarioWarehouse

ACCOUNT = 50000001


@dataclass(frozen=True)
class Template:
    """The built warehouse, kept as a template; each case's copy takes the name `name`."""

    server: PgParams
    name: str
    template: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)


def admin(server: PgParams) -> psycopg.Connection:
    """A connection to the server's maintenance database (databases are created from there)."""
    return psycopg.connect(server.url(), autocommit=True)


@pytest.fixture(scope="module")
def template(pg_server: PgParams, new_database, tmp_path_factory) -> Iterator[Template]:
    url = new_database("wh_audits")
    patch = pytest.MonkeyPatch()
    patch.setenv("WAREHOUSE_URL", url)
    patch.delenv("SOURCE_URL", raising=False)
    patch.setenv("WAREHOUSE_DIR", str(tmp_path_factory.mktemp("dir_audits")))
    reset_settings()
    warehouse = ScenarioWarehouse(url)
    warehouse.create_raw_tables()
    warehouse.batch(
        "customers",
        [
            {"customer_id": c, "city": "Leeds", "updated_at": "2026-01-05 09:00+00"}
            for c in (11, 12, 13)
        ],
    )
    warehouse.batch("accounts", [{"account_id": ACCOUNT, "updated_at": "2026-01-01 09:00+00"}])
    warehouse.batch(
        "account_holders",
        [
            {
                "account_id": ACCOUNT,
                "customer_id": 11,
                "valid_from": "2026-01-01",
                "updated_at": "2026-01-01 09:00+00",
            }
        ],
    )
    warehouse.batch(
        "transactions",
        [{"transaction_id": 9001, "account_id": ACCOUNT, "updated_at": "2026-01-02 10:00+00"}],
    )
    with psycopg.connect(url) as conn:
        # R1 is published a millisecond before the next hour (UTC) and runs at its start: its rows
        # lie in whole hourly intervals, which later runs never redo (a run redoes the hour in
        # progress, and would rewrite a corrupted row of it from silver).
        conn.execute(
            "insert into ops.transform_clock (execution_time) "
            "values (to_timestamp(ceil(extract(epoch from now()) / 3600) * 3600) "
            "- interval '1 millisecond')"
        )
    warehouse.run("R1")
    # The built warehouse has what every case corrupts.
    with psycopg.connect(url) as conn:
        for table, rows in {
            "vault.hub_customer": 3,
            "vault.sat_customer_personal": 3,
            "vault.link_account_transaction": 1,
            "vault.eff_sat_customer_account": 1,
            "vault.pit_customer": 3,
            "gold.dim_customer": 3,
            "gold.fact_transactions": 1,
        }.items():
            count = sql.SQL("select count(*) from {}").format(sql.Identifier(*table.split(".")))
            assert conn.execute(count).fetchone()[0] == rows, table
    server, name = pg_server, parse_url(url).database
    with admin(server) as conn:
        # Our own sessions only (this database is this module's): a template has no user.
        conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity "
            "where datname = %s and pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(
            sql.SQL("alter database {} rename to {}").format(
                sql.Identifier(name), sql.Identifier(f"{name}_t")
            )
        )
    yield Template(server, name, f"{name}_t")
    with admin(server) as conn:
        conn.execute(sql.SQL("drop database if exists {}").format(sql.Identifier(f"{name}_t")))
    patch.undo()
    reset_settings()


@pytest.fixture
def warehouse(template: Template) -> Iterator[ScenarioWarehouse]:
    """A fresh copy of the built warehouse, under the name its SQLMesh state knows."""
    with admin(template.server) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(template.name), sql.Identifier(template.template)
            )
        )
    yield ScenarioWarehouse(template.url)
    with admin(template.server) as conn:
        # WITH (FORCE): SQLMesh's connections of a failed run may linger (ours: this test's).
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(template.name)))


# ---------------------------------------------------------------- helpers


def physical_table(conn: psycopg.Connection, view: str) -> sql.Identifier:
    """The table behind a model's view (SQLMesh's versioned table in sqlmesh__<schema>)."""
    schema, name = view.split(".")
    rows = conn.execute(
        "select table_schema, table_name from information_schema.view_table_usage "
        "where view_schema = %s and view_name = %s",
        (schema, name),
    ).fetchall()
    assert len(rows) == 1, rows
    return sql.Identifier(*rows[0])


def hash_key(conn: psycopg.Connection, *parts: object) -> str:
    """The hash key the vault gives a business key: the project's own macro, rendered."""
    names = [f"k{i}" for i in range(len(parts))]
    expression = _hash(tuple(exp.column(n) for n in names), upper=True)
    query = sql.SQL("select {} from (select {}) as k").format(
        sql.SQL(expression),  # type: ignore[arg-type]  # the project's macro output
        sql.SQL(", ").join(
            sql.SQL("{}::text as {}").format(sql.Placeholder(), sql.Identifier(n)) for n in names
        ),
    )
    return conn.execute(query, [str(p) for p in parts]).fetchone()[0]


def recorded_until(conn: psycopg.Connection) -> dict[str, datetime]:
    """Per model (`gold.dim_customer`), the end of the last interval SQLMesh recorded in prod."""
    rows = conn.execute(
        "select name, max(end_ts) from sqlmesh._intervals where not is_dev group by name"
    ).fetchall()
    return {model_name(n): datetime.fromtimestamp(end / 1000, UTC) for n, end in rows}


# ---------------------------------------------------------------- the corruptions


def future_hub_row(wh: ScenarioWarehouse, conn: psycopg.Connection) -> None:
    """hub_customer holds customer 21 already, stamped a year ahead (a row written behind the
    pattern's back): the hub's load looks only at rows loaded before its interval, so the next
    batch's customer 21 lands again, and the key is in the hub twice."""
    hub = physical_table(conn, "vault.hub_customer")
    conn.execute(
        sql.SQL(
            "insert into {} (customer_hk, customer_id, load_ts, record_source) "
            "values (%s, 21, (select execution_time from ops.transform_clock) "
            "+ interval '1 year', 'corebank')"
        ).format(hub),
        (hash_key(conn, 21),),
    )
    wh.batch("customers", [{"customer_id": 21, "updated_at": "2026-01-06 09:00+00"}])


def publications_a_microsecond_apart(wh: ScenarioWarehouse, conn: psycopg.Connection) -> None:
    """Publications a microsecond apart (publication keeps a millisecond between loads): two
    batches published together bring two versions of customer 12, stored at their stamp and a
    microsecond after it; a third batch, published a microsecond later, one more version, stored
    at that very microsecond. Same key, same load time."""
    together = [
        wh.batch("customers", [{"customer_id": 12, "city": city, "updated_at": at}])
        for city, at in (("York", "2026-01-06 09:00+00"), ("Hull", "2026-01-06 10:00+00"))
    ]
    later = wh.batch(
        "customers", [{"customer_id": 12, "city": "Bath", "updated_at": "2026-01-06 11:00+00"}]
    )
    conn.execute(
        """
        update ops.batches
        set published_at = (select execution_time from ops.transform_clock)
          + case when batch_id = %s then interval '1 microsecond' else interval '0' end
        where batch_id = any(%s)
        """,
        (later, [*together, later]),
    )
    # What publish_batches would have set: SQLMesh runs a millisecond past the last stamp.
    conn.execute(
        "update ops.transform_clock set execution_time = "
        "(select max(published_at) from ops.batches) + interval '1 millisecond'"
    )


def hub_row_deleted(wh: ScenarioWarehouse, conn: psycopg.Connection) -> None:
    """The account's hub row is gone; a new transaction on the account links to it."""
    conn.execute(
        sql.SQL("delete from {} where account_id = %s").format(
            physical_table(conn, "vault.hub_account")
        ),
        (ACCOUNT,),
    )
    wh.batch(
        "transactions",
        [{"transaction_id": 9002, "account_id": ACCOUNT, "updated_at": "2026-01-06 10:00+00"}],
    )


def repeat_stored_before(wh: ScenarioWarehouse, conn: psycopg.Connection) -> None:
    """Customer 13's satellite holds a copy of its Leeds row, loaded a day before the first one
    but stamped 10:00 on 6 January. The next batch moves 13 to York at 09:00 and back to Leeds at
    11:00: the pattern (which judges versions from silver) stores both, and Leeds now follows the
    copy with the same hashdiff (two batches, one version each, published together)."""
    sat = physical_table(conn, "vault.sat_customer_personal")
    conn.execute(
        sql.SQL(
            "insert into {sat} select s.customer_hk, s.load_ts - interval '1 day', s.hashdiff, "
            "s.record_source, timestamptz '2026-01-06 10:00+00', s.batch_id, s.first_name, "
            "s.last_name, s.email, s.phone, s.date_of_birth, s.address_line1, s.city, s.postcode "
            "from {sat} as s where s.customer_hk = %s"
        ).format(sat=sat),
        (hash_key(conn, 13),),
    )
    for city, at in (("York", "2026-01-06 09:00+00"), ("Leeds", "2026-01-06 11:00+00")):
        wh.batch("customers", [{"customer_id": 13, "city": city, "updated_at": at}])


def earlier_open_period(wh: ScenarioWarehouse, conn: psycopg.Connection) -> None:
    """Customer 11's holding of the account has a second open period, from 1 December, stored a
    day before the real one: when the next batch closes the real period, the relationship's
    periods overlap (the earlier one never ended)."""
    eff = physical_table(conn, "vault.eff_sat_customer_account")
    conn.execute(
        sql.SQL(
            "insert into {eff} select e.customer_account_hk, e.load_ts - interval '1 day', "
            "e.hashdiff, e.record_source, e.effective_from - interval '1 month', e.batch_id, "
            "date '2025-12-01', null from {eff} as e where e.customer_account_hk = %s"
        ).format(eff=eff),
        (hash_key(conn, 11, ACCOUNT),),
    )
    wh.batch(
        "account_holders",
        [
            {
                "account_id": ACCOUNT,
                "customer_id": 11,
                "valid_from": "2026-01-01",
                "valid_to": "2026-01-20",
                "updated_at": "2026-01-20 09:00+00",
            }
        ],
    )


def pit_pointer_written_wrong(wh: ScenarioWarehouse, conn: psycopg.Connection) -> None:
    """The write of pit_customer shifts customer 12's personal-data pointer by a microsecond, as
    a faulty load would (a PIT's pointers are read from the satellites as it is written, so no
    stored row can make one dangle). The next batch changes customer 12."""
    pit = physical_table(conn, "vault.pit_customer")
    conn.execute(
        """
        create function public.shift_personal_pointer() returns trigger language plpgsql as $$
        begin
          new.sat_customer_personal_load_ts :=
            new.sat_customer_personal_load_ts + interval '1 microsecond';
          return new;
        end $$
        """
    )
    conn.execute(
        sql.SQL(
            "create trigger shift_personal_pointer before insert on {} for each row "
            "when (new.customer_hk = {}) execute function public.shift_personal_pointer()"
        ).format(pit, sql.Literal(hash_key(conn, 12)))
    )
    wh.batch(
        "customers", [{"customer_id": 12, "city": "York", "updated_at": "2026-01-06 09:00+00"}]
    )


@dataclass(frozen=True)
class Case:
    audit: str
    model: str
    corrupt: Callable[[ScenarioWarehouse, psycopg.Connection], None]
    upstream: str  # a model the run builds for the interval (before the failing one)

    @property
    def downstream(self) -> tuple[str, ...]:
        """The gold models built on the failing one, as SQLMesh's DAG says."""
        return gold_built_on(self.model)


@functools.cache
def gold_built_on(model: str) -> tuple[str, ...]:
    from sqlmesh import Context

    context = Context(paths=str(Path(__file__).resolve().parents[1]))
    names = {m.fqn: m.name for m in context.models.values()}
    fqn = context.get_model(model).fqn
    return tuple(
        sorted(names[d] for d in context.dag.downstream(fqn) if names[d].startswith("gold."))
    )


CASES = {
    "hub key unique": Case(
        "unique_keys",
        "vault.hub_customer",
        future_hub_row,
        "silver.customers",
    ),
    "satellite key and load time unique": Case(
        "unique_combination_of_columns",
        "vault.sat_customer_personal",
        publications_a_microsecond_apart,
        "silver.customers",
    ),
    "link key in its hub": Case(
        "link_hub_keys_exist",
        "vault.link_account_transaction",
        hub_row_deleted,
        "silver.transactions",
    ),
    "no repeated hashdiff": Case(
        "no_repeated_hashdiff",
        "vault.sat_customer_personal",
        repeat_stored_before,
        "silver.customers",
    ),
    "effectivity periods do not overlap": Case(
        "effectivity_periods_do_not_overlap",
        "vault.eff_sat_customer_account",
        earlier_open_period,
        "silver.account_holders",
    ),
    "PIT points at existing rows": Case(
        "pit_points_at_existing_rows",
        "vault.pit_customer",
        pit_pointer_written_wrong,
        "vault.sat_customer_personal",
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_the_audit_stops_the_run(warehouse: ScenarioWarehouse, case: Case) -> None:
    with psycopg.connect(warehouse.url, autocommit=True) as conn:
        before = recorded_until(conn)
        # A day later: the next batch is published in intervals of its own.
        conn.execute("update ops.transform_clock set execution_time = execution_time + '1 day'")
        case.corrupt(warehouse, conn)
    with pytest.raises(TransformError) as failure:
        warehouse.run("corrupted")
    error = failure.value
    assert error.audit_failed and not error.retryable
    # One model, one audit, the one corrupted row: nothing else in the run failed.
    message = str(error)
    assert message.startswith(f"sqlmesh run (prod) failed: {case.model}: audit {case.audit}("), (
        error
    )
    assert message.endswith(") found 1 bad row") and message.count("audit ") == 1, error
    with psycopg.connect(warehouse.url) as conn:
        # The corrupted batch was published, in an interval after everything built before.
        published = conn.execute("select max(published_at) from ops.batches").fetchone()[0]
        assert published > max(before.values())
        after = recorded_until(conn)
        # The run built the interval up to the failing model...
        assert after[case.upstream] > published
        # ...and neither the model nor anything built on it recorded it (nor anything since).
        for model in (case.model, *case.downstream):
            assert after.get(model, before[model]) <= before[model] < published, model
        # Gold models not built on it ran on: the check above could fail.
        others = [m for m in after if m.startswith("gold.") and m not in case.downstream]
        assert others and all(after[m] > published for m in others), others
        # The failure is on record, against the model and the audit.
        assert conn.execute(
            "select bool_or(not passed and bad_rows > 0) from ops.audit_results "
            "where model = %s and audit = %s",
            (case.model, case.audit),
        ).fetchone()[0]
