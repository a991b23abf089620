"""Gold's dimensions, fact keys and marts on real Postgres and real SQLMesh runs.

Two warehouses, each built once per module: a hand-fed scenario (raw batches written straight into
raw, as in tests/test_vault_patterns.py) where a late account version arrives after a fact was
written, and a simulated bank (a few weeks of the core bank and its CRM feeds, one pipeline run)
on which the invariants of every gold model are checked against silver and the vault.
"""

from __future__ import annotations

from datetime import date

import psycopg
import pytest

from flows.pipeline import run_flow
from flows.settings import reset_settings
from flows.simulate import simulate
from tests.vault_helpers import ScenarioWarehouse

SCALE, DAYS, SEED = 60, 20, 11


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        conn.execute("set timezone = 'UTC'")
        return conn.execute(query, params).fetchall()


# ---------------------------------------------------------------- a late dimension change


@pytest.fixture(scope="module")
def scenario(bank_factory) -> ScenarioWarehouse:
    """R1: account 91000001 (open since 2026-01-01) and a transaction booked on 2026-01-05.
    R2: a replay brings a version of the account dated 2026-01-04 (dormant), older than the
    fact written in R1: the fact is re-keyed to it. R3: the account reopens on 2026-01-10 (a
    normal change): the fact, booked before it, keeps its key."""
    bank = bank_factory("gold_scenario")
    wh = ScenarioWarehouse(bank.warehouse_url)
    wh.create_raw_tables()
    wh.batch("products", [{"product_id": "CUR-STD", "updated_at": "2026-01-01 08:00"}])
    wh.batch("customers", [{"customer_id": 901, "updated_at": "2026-01-01 09:00"}])
    wh.batch("accounts", [{"account_id": 91000001, "updated_at": "2026-01-01 09:00"}])
    wh.batch(
        "account_holders",
        [
            {
                "account_id": 91000001,
                "customer_id": 901,
                "valid_from": "2026-01-01",
                "updated_at": "2026-01-01 09:00",
            }
        ],
    )
    wh.batch(
        "transactions",
        [
            {
                "transaction_id": 9101,
                "account_id": 91000001,
                "booking_date": "2026-01-05",
                "booked_at": "2026-01-05 10:00+00",
                "transaction_date": "2026-01-05",
                "updated_at": "2026-01-05 10:00",
            }
        ],
    )
    wh.run("R1")
    wh.batch(
        "accounts",
        [{"account_id": 91000001, "status": "dormant", "updated_at": "2026-01-04 09:00"}],
        kind="replay",
    )
    wh.run("R2")
    wh.batch(
        "accounts", [{"account_id": 91000001, "status": "open", "updated_at": "2026-01-10 09:00"}]
    )
    wh.run("R3")
    return wh


def test_dim_account_keeps_every_version_with_contiguous_validity(scenario):
    """Three versions in source order (the late one in its place); each ends where the next
    starts; the first holds from the opening day; one is current."""
    assert scenario.query(
        "select status, valid_from, valid_to, is_current from gold.dim_account "
        "where account_id = 91000001 order by valid_from"
    ) == [
        {
            "status": "open",
            "valid_from": "2025-01-01 00:00",
            "valid_to": "2026-01-04 09:00",
            "is_current": "false",
        },
        {
            "status": "dormant",
            "valid_from": "2026-01-04 09:00",
            "valid_to": "2026-01-10 09:00",
            "is_current": "false",
        },
        {
            "status": "open",
            "valid_from": "2026-01-10 09:00",
            "valid_to": None,
            "is_current": "true",
        },
    ]


def test_a_late_dimension_version_re_keys_the_facts_it_reaches(scenario):
    """The fact written in R1 pointed at the only version then known (open); the late dormant
    version of R2 starts before the booking, so the fact now points at it; R3's version starts
    after the booking and changes nothing."""
    fact = scenario.query(
        "select a.status, a.valid_from, f.primary_customer_id, f.date_key, "
        "       c.customer_id as version_customer, p.product_id as version_product "
        "from gold.fact_transactions as f "
        "join gold.dim_account as a on a.account_version_key = f.account_version_key "
        "join gold.dim_customer as c on c.customer_version_key = f.customer_version_key "
        "join gold.dim_product as p on p.product_version_key = f.product_version_key "
        "where f.transaction_id = 9101"
    )
    assert fact == [
        {
            "status": "dormant",
            "valid_from": "2026-01-04 09:00",
            "primary_customer_id": "901",
            "date_key": "20260105",
            "version_customer": "901",
            "version_product": "CUR-STD",
        }
    ]


# ---------------------------------------------------------------- a simulated bank


@pytest.fixture(scope="module")
def bank(bank_factory, tmp_path_factory):
    bank = bank_factory("gold_marts")
    landing = tmp_path_factory.mktemp("landing_gold")
    patch = pytest.MonkeyPatch()
    patch.setenv("LANDING_DIR", str(landing))
    reset_settings()
    simulate(bank.source_url, DAYS, scale=SCALE, seed=SEED, bad_rate=0.02, landing_dir=landing)
    run_flow()
    yield bank.warehouse_url
    patch.undo()
    reset_settings()


def test_every_account_has_one_current_version_and_versions_do_not_overlap(bank):
    (accounts, current, overlapping, gaps) = rows(
        bank,
        """
        select
          (select count(*) from vault.hub_account),
          (select count(*) from gold.dim_account where is_current),
          (select count(*) from gold.dim_account as a join gold.dim_account as b
             on a.account_hk = b.account_hk and a.valid_from < b.valid_from
             and (a.valid_to is null or a.valid_to > b.valid_from)),
          (select count(*) from (
             select valid_to,
                    lead(valid_from) over (partition by account_hk order by valid_from) as next
             from gold.dim_account) as v
           where v.next is not null and v.next <> v.valid_to)
        """,
    )[0]
    assert accounts > 50
    assert current == accounts
    assert overlapping == 0
    assert gaps == 0


def test_every_fact_finds_the_dimension_versions_valid_when_it_was_booked(bank):
    (facts, account_ok, customer_ok, product_ok, date_ok, with_holder, held_back) = rows(
        bank,
        """
        select
          count(*),
          count(*) filter (where exists (
            select 1 from gold.dim_account as a
            where a.account_version_key = f.account_version_key and a.account_hk = f.account_hk
              and a.valid_from <= f.booked_at
              and (a.valid_to is null or f.booked_at < a.valid_to))),
          count(*) filter (where exists (
            select 1 from gold.dim_customer as c
            where c.customer_version_key = f.customer_version_key
              and c.customer_hk = f.primary_customer_hk
              and (c.valid_to is null or f.booked_at < c.valid_to)
              and (c.valid_from <= f.booked_at
                   -- booked minutes before the customer record was created: its first version
                   or not exists (select 1 from gold.dim_customer as e
                                  where e.customer_hk = c.customer_hk
                                    and e.valid_from < c.valid_from)))),
          count(*) filter (where exists (
            select 1 from gold.dim_product as p
            where p.product_version_key = f.product_version_key and p.product_hk = f.product_hk
              and p.valid_from <= f.booked_at
              and (p.valid_to is null or f.booked_at < p.valid_to))),
          count(*) filter (where exists (
            select 1 from gold.dim_date as d
            where d.date_key = f.date_key and d.calendar_date = f.booking_date)),
          count(*) filter (where f.primary_customer_hk is not null),
          count(*) filter (where not exists (
            select 1 from gold.dim_customer as c where c.customer_hk = f.primary_customer_hk))
        from gold.fact_transactions as f
        """,
    )[0]
    assert facts > 1000
    assert account_ok == facts
    assert product_ok == facts
    assert date_ok == facts
    assert with_holder == facts  # every account has a primary holder from its opening day
    # A holder whose customer record broke its contract (bad_rate) has no dim_customer version
    # until it is fixed and replayed: those facts have no customer version, and only those.
    assert held_back < facts / 100
    assert customer_ok == facts - held_back


def test_dim_date_is_a_contiguous_calendar_with_the_bank_holidays(bank):
    (days, span, first, last) = rows(
        bank,
        "select count(*), max(calendar_date) - min(calendar_date) + 1, min(calendar_date), "
        "max(calendar_date) from gold.dim_date",
    )[0]
    assert days == span
    assert first <= date(2026, 1, 1) and last >= date(2027, 12, 31)
    holidays_2026 = rows(
        bank,
        "select calendar_date, bank_holiday_name from gold.dim_date "
        "where year = 2026 and is_bank_holiday order by 1",
    )
    # England and Wales, 2026 (gov.uk): Boxing Day falls on a Saturday, moved to Monday 28th.
    assert holidays_2026 == [
        (date(2026, 1, 1), "New Year's Day"),
        (date(2026, 4, 3), "Good Friday"),
        (date(2026, 4, 6), "Easter Monday"),
        (date(2026, 5, 4), "Early May bank holiday"),
        (date(2026, 5, 25), "Spring bank holiday"),
        (date(2026, 8, 31), "Summer bank holiday"),
        (date(2026, 12, 25), "Christmas Day"),
        (date(2026, 12, 28), "Boxing Day"),
    ]
    assert rows(
        bank,
        "select iso_week, day_of_week, is_weekend, is_month_end, month_name, quarter "
        "from gold.dim_date where calendar_date = '2026-02-28'",
    ) == [(9, 6, True, True, "February", 1)]


def test_order_metrics_count_what_silver_holds(bank):
    """Totals per status equal silver's orders by their latest version; rates are shares."""
    silver = dict(
        rows(
            bank,
            """
            select status, count(*) from (
              select distinct on (order_id) order_id, status from silver.orders
              where is_valid order by order_id, updated_at desc, batch_id desc
            ) as latest group by status
            """,
        )
    )
    assert sum(silver.values()) > 3
    (orders, fulfilled, cancelled, rejected, open_, bad_rates, groups) = rows(
        bank,
        "select sum(orders), sum(fulfilled_orders), sum(cancelled_orders), sum(rejected_orders), "
        "sum(open_orders), count(*) filter (where fulfilment_rate not between 0 and 1 "
        "or cancellation_rate not between 0 and 1 "
        "or fulfilment_rate <> round(fulfilled_orders::numeric / orders, 4)), count(*) "
        "from gold.order_metrics",
    )[0]
    assert orders == sum(silver.values())
    assert fulfilled == silver.get("fulfilled", 0)
    assert cancelled == silver.get("cancelled", 0)
    assert rejected == silver.get("rejected", 0)
    assert open_ == silver.get("placed", 0) + silver.get("approved", 0)
    assert bad_rates == 0
    assert groups > 1


def engagement(row: dict) -> str:  # type: ignore[type-arg]
    """The engagement rule of gold.customer_360's description."""
    tx, products, contacts = (
        row["customer_transactions_90d"],
        row["products_held"],
        row["interactions_90d"],
    )
    if tx >= 20 and (products >= 2 or contacts >= 1):
        return "high"
    if tx >= 5 or contacts >= 2:
        return "medium"
    if tx >= 1 or contacts >= 1:
        return "low"
    return "none"


def test_customer_360_follows_its_stated_rules(bank):
    with psycopg.connect(bank) as conn:
        cursor = conn.execute("select * from gold.customer_360")
        names = [d.name for d in cursor.description]
        customers = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    assert len(customers) >= SCALE
    for row in customers:
        assert row["engagement_level"] == engagement(row), row
        reasons = set(row["churn_reasons"])
        if row["churn_risk"] == "high":
            assert reasons & {"closed_all", "inactive", "complaints"}, row
        elif row["churn_risk"] == "medium":
            assert reasons and not reasons & {"closed_all", "inactive", "complaints"}, row
        elif row["churn_risk"] == "low":
            assert not reasons, row
        if row["accounts_held"] > 0 and row["customer_transactions_90d"] == 0:
            assert row["churn_risk"] == "high", row
    assert {r["engagement_level"] for r in customers} >= {"high", "low"} or len(
        {r["engagement_level"] for r in customers}
    ) > 1
    # One customer checked by hand against the fact and the CRM vault.
    busiest = max(customers, key=lambda r: (r["transactions_90d"], r["customer_id"]))
    as_of = busiest["as_of_date"]
    (transactions, interactions) = rows(
        bank,
        """
        select
          (select count(*) from gold.fact_transactions as f
           where f.booking_date between %(as_of)s::date - 89 and %(as_of)s
             and f.account_id in (
               select account_id from silver.current_account_holders
               where customer_id = %(customer)s and is_valid and not is_deleted
                 and valid_to is null)),
          (select count(*) from vault.link_customer_interaction as l
           join vault.hub_customer as c using (customer_hk)
           where c.customer_id = %(customer)s)
        """,
        {"as_of": as_of, "customer": busiest["customer_id"]},
    )[0]
    assert busiest["transactions_90d"] == transactions > 0
    assert busiest["interactions_total"] == interactions


def test_dq_scorecard_measures_what_the_batches_and_contracts_recorded(bank):
    (entities, bad) = rows(
        bank,
        """
        select count(distinct entity),
               count(*) filter (where not (
                 coalesce(completeness, 0) between 0 and 1
                 and coalesce(validity, 0) between 0 and 1
                 and coalesce(uniqueness, 0) between 0 and 1
                 and coalesce(timeliness, 0) between 0 and 1))
        from gold.dq_scorecard
        """,
    )[0]
    assert entities >= 5
    assert bad == 0
    # Validity is rows that passed over rows read, per entity and day, from the batch ledger.
    mismatches = rows(
        bank,
        """
        select s.entity, s.score_date, s.validity, b.read, b.loaded
        from gold.dq_scorecard as s
        join (
          select entity, (published_at at time zone 'UTC')::date as day,
                 sum(rows_in) as read, sum(rows_loaded) as loaded
          from ops.batches where status = 'committed' and kind = 'extract'
            and published_at is not null
          group by 1, 2
        ) as b on b.entity = s.entity and b.day = s.score_date
        where s.validity is distinct from round(b.loaded::numeric / nullif(b.read, 0), 4)
           or s.rows_read <> b.read
        """,
    )
    assert mismatches == []
    # The simulator plants bad records (bad_rate 2%): some entity's validity is below 1.
    assert rows(bank, "select count(*) from gold.dq_scorecard where validity < 1")[0][0] > 0
    # Audits are recorded after the SQLMesh run that ran them: a run's audits count from the
    # next run of the day on, and are consistent where counted.
    assert (
        rows(
            bank,
            "select count(*) from gold.dq_scorecard where audits_failed > audits_run "
            "or (audit_pass_rate is null) <> (audits_run = 0)",
        )[0][0]
        == 0
    )
