/* Daily balance of every account: one row per account per calendar day in the bank's zone
   (BANK_TIMEZONE), from the account's first day (the day its ledger opened in the source; the
   opening date for an account with no ledger) to the run's end day, or to its closing day once
   closed. A day's closing balance = its opening balance + credits - debits booked on it
   (gold.fact_transactions by booking_date); the first day opens with the ledger's opening
   balance. A booking dated before the first day counts on the first day, one dated after the
   closing day on the closing day, so that the last row always holds every booked fact.
   Money is numeric in the account's currency. Grain: account_hk, balance_date.

   Cost: this runs with every transformation (every five minutes), so a run writes what is new,
   never accounts x days. INCREMENTAL_BY_UNIQUE_KEY on (account_hk, balance_date), reading its
   own table (columns declared):
   - recomputed accounts: those with a transaction whose vault rows changed in the interval (new,
     changed, late with an old booking date, or deleted in the source), from the earliest
     booking date any version of it carried (a moved booking date changes both days), starting
     from the stored closing balance of the day before; accounts whose ledger opening balance
     arrived or changed, and accounts new to the table, from their first day; accounts whose
     details changed (a closing), from their last day. Their days up to the last day are
     rewritten (upsert); days past a closing are deleted (post-statement).
   - every other account gets the days after the table's latest day carried forward from its
     closing balance there (nothing to do until the bank's day turns).
   A first build (or a backfill over months) is one interval: every account from its first day,
   one window function over accounts x days, linear in the rows written. Days are dates: the
   series runs over `timestamp` (no zone), so a DST change never adds or loses a day; the end day
   is the end instant read in the bank's zone, whatever the server's TimeZone.
   Limits: an account that reopens after its closing day is not extended again. */
MODEL (
  name gold.fact_account_daily_balance,
  kind INCREMENTAL_BY_UNIQUE_KEY (unique_key (account_hk, balance_date)),
  cron '@hourly',
  grain (account_hk, balance_date),
  /* read by its reconciliation audit: the ledger as loaded and what silver holds back */
  depends_on (silver.account_balances, silver.transactions),
  columns (
    account_hk text, account_id bigint, balance_date date, currency char(3),
    opening_balance numeric(16, 2), credits numeric(16, 2), debits numeric(16, 2),
    transaction_count bigint, closing_balance numeric(16, 2), booked_transactions_to_date bigint,
    last_change_at timestamptz
  ),
  audits (
    not_null(
      columns := (account_hk, balance_date, opening_balance, closing_balance),
      condition := balance_date >= (@end_tstz at time zone @VAR('bank_timezone'))::date - 1
    ),
    daily_balance_rolls_forward,
    ledger_matches_gold_for_accounts_booked
  )
);

with run_days as (
  select
    (@end_tstz at time zone @VAR('bank_timezone'))::date as end_day,
    (select max(balance_date) from gold.fact_account_daily_balance) as stored_until
),
changed_transactions as (
  /* transactions whose vault rows changed in the interval (booked, moved, deleted) */
  select transaction_hk from @keys_loaded(
    transaction_hk, vault.sat_transaction_details, vault.sat_transaction_deleted
  ) as loaded
),
changed_from as (
  /* per account, the earliest booking date any version of a changed transaction carried */
  select l.account_hk, min(s.booking_date) as from_date
  from changed_transactions as c
  join vault.sat_transaction_details as s on s.transaction_hk = c.transaction_hk
  join vault.link_account_transaction as l on l.transaction_hk = c.transaction_hk
  where s.load_ts <= @end_tstz and s.booking_date is not null
  group by l.account_hk
),
ledger_changed as (
  /* ledgers whose opening balance or first day arrived or changed in the interval */
  select n.account_hk, date '0001-01-01' as from_date
  from vault.sat_account_ledger as n
  where n.load_ts between @start_tstz and @end_tstz
    and not exists (
      select 1 from vault.sat_account_ledger as p
      where p.account_hk = n.account_hk and p.load_ts < n.load_ts
        and p.opening_balance = n.opening_balance and p.created_at = n.created_at
    )
),
details_changed as (
  /* a closing: the days after it go (post-statement); other days carry on as before */
  select distinct d.account_hk, coalesce(r.stored_until + 1, date '0001-01-01') as from_date
  from vault.sat_account_details as d
  cross join run_days as r
  where d.load_ts between @start_tstz and @end_tstz
),
requests as (
  /* a request past the day after the table's latest day starts there (a run spanning days) */
  select r.account_hk, least(min(r.from_date), coalesce(min(d.stored_until) + 1, min(r.from_date))) as from_date
  from run_days as d, (
    select * from changed_from
    union all select * from ledger_changed
    union all select * from details_changed
  ) as r
  group by r.account_hk
),
details_wanted as (
  /* the accounts this run writes: those touched, and, when the day turned, those carried */
  select account_hk from requests
  union all
  select t.account_hk from gold.fact_account_daily_balance as t, run_days as r
  where t.balance_date = r.stored_until and r.stored_until < r.end_day
),
account_details as (
  /* the latest details in source order of the accounts this run writes */
  select distinct on (d.account_hk) d.account_hk, d.currency, d.opened_on, d.closed_on
  from vault.sat_account_details as d
  where d.load_ts <= @end_tstz
    and d.account_hk = any(array(select account_hk from details_wanted))
  order by d.account_hk, d.effective_from desc, d.batch_id desc
),
ledgers as (
  select distinct on (g.account_hk) g.account_hk, g.opening_balance, g.created_at
  from vault.sat_account_ledger as g
  where g.load_ts <= @end_tstz and g.account_hk = any(array(select account_hk from requests))
  order by g.account_hk, g.effective_from desc, g.batch_id desc
),
spans as (
  /* each account's first and last day */
  select
    d.account_hk,
    h.account_id,
    d.currency,
    coalesce((g.created_at at time zone @VAR('bank_timezone'))::date, d.opened_on) as first_day,
    least(r.end_day, coalesce(d.closed_on, r.end_day)) as last_day,
    coalesce(g.opening_balance, 0) as ledger_opening
  from account_details as d
  join vault.hub_account as h on h.account_hk = d.account_hk
  left join ledgers as g on g.account_hk = d.account_hk
  cross join run_days as r
),
recompute as (
  /* where each touched account's days restart, and the balance they restart from: the stored
     day before, or the ledger's opening balance on the first day (or when the day before was
     never stored) */
  select
    s.account_hk, s.account_id, s.currency, s.first_day, s.last_day,
    case when prior.account_hk is null then s.first_day
      else least(greatest(q.from_date, s.first_day), s.last_day) end as from_date,
    case when prior.account_hk is null then s.ledger_opening else prior.closing_balance end as base_balance,
    case when prior.account_hk is null then 0 else prior.booked_transactions_to_date end as base_count,
    prior.last_change_at as base_change_at
  from requests as q
  join spans as s on s.account_hk = q.account_hk
  left join gold.fact_account_daily_balance as prior
    on prior.account_hk = q.account_hk
    /* a booking dated after a closing counts on the closing day: restart there at the latest */
    and prior.balance_date = least(greatest(q.from_date, s.first_day), s.last_day) - 1
    and least(greatest(q.from_date, s.first_day), s.last_day) > s.first_day
),
recomputed_facts as (
  /* the touched accounts' facts from their restart day, dated within their span */
  select
    r.account_hk,
    least(greatest(f.booking_date, r.first_day), r.last_day) as balance_date,
    coalesce(sum(f.amount) filter (where f.direction = 'credit'), 0) as credits,
    coalesce(sum(f.amount) filter (where f.direction <> 'credit'), 0) as debits,
    count(*) as transaction_count,
    max(f.loaded_at) as last_change_at
  from recompute as r
  join gold.fact_transactions as f
    on f.account_hk = r.account_hk
    and f.booking_date >= case when r.from_date = r.first_day then date '0001-01-01' else r.from_date end
  group by 1, 2
),
recomputed_days as (
  select
    r.account_hk, r.account_id, r.currency, d.day::date as balance_date,
    coalesce(f.credits, 0) as credits,
    coalesce(f.debits, 0) as debits,
    coalesce(f.transaction_count, 0) as transaction_count,
    r.base_balance + sum(coalesce(f.credits, 0) - coalesce(f.debits, 0)) over (partition by r.account_hk order by d.day) as closing_balance,
    r.base_count + sum(coalesce(f.transaction_count, 0)) over (partition by r.account_hk order by d.day) as booked_transactions_to_date,
    greatest(r.base_change_at, max(f.last_change_at) over (partition by r.account_hk order by d.day)) as last_change_at
  from recompute as r
  cross join lateral generate_series(
    r.from_date::timestamp, r.last_day::timestamp, interval '1 day'
  ) as d(day)
  left join recomputed_facts as f on f.account_hk = r.account_hk and f.balance_date = d.day::date
),
carried_forward as (
  /* every other account: the days after the table's latest day, at its closing balance */
  select
    t.account_hk, t.account_id, t.currency, d.day::date as balance_date,
    0::numeric as credits, 0::numeric as debits, 0::bigint as transaction_count,
    t.closing_balance, t.booked_transactions_to_date, t.last_change_at
  from gold.fact_account_daily_balance as t
  cross join run_days as r
  join account_details as a on a.account_hk = t.account_hk
  cross join lateral generate_series(
    (t.balance_date + 1)::timestamp,
    least(r.end_day, coalesce(a.closed_on, r.end_day))::timestamp,
    interval '1 day'
  ) as d(day)
  where t.balance_date = r.stored_until and r.stored_until < r.end_day
    and t.account_hk not in (select account_hk from requests)
),
balances as (
  select * from recomputed_days
  union all
  select * from carried_forward
)
select
  account_hk, /* the account (hash key, joins gold.dim_account) */
  account_id, /* core-banking account id */
  balance_date, /* the calendar day, in the bank's zone */
  currency::char(3) as currency, /* the account's currency: every amount of the row is in it */
  (closing_balance - credits + debits)::numeric(16, 2) as opening_balance, /* balance at the start of the day: the day before's closing, or the ledger's opening balance on the first day */
  credits::numeric(16, 2) as credits, /* sum of booked credits dated this day */
  debits::numeric(16, 2) as debits, /* sum of booked debits dated this day (positive) */
  transaction_count::bigint as transaction_count, /* booked transactions dated this day */
  closing_balance::numeric(16, 2) as closing_balance, /* balance at the end of the day: opening + credits - debits */
  booked_transactions_to_date::bigint as booked_transactions_to_date, /* booked transactions from the first day to this one */
  last_change_at /* vault load time of the latest fact counted up to this day (null before the first booking): rows a run changed have it in the run */
from balances;

/* Days past a closing the account's details brought in this interval leave the table. */
@IF(
  @runtime_stage = 'evaluating',
  delete from @this_model as t
  using (
    select distinct on (d.account_hk) d.account_hk, d.closed_on
    from vault.sat_account_details as d
    where d.load_ts <= @end_tstz
      and d.account_hk in (
        select account_hk from vault.sat_account_details
        where load_ts between @start_tstz and @end_tstz
      )
    order by d.account_hk, d.effective_from desc, d.batch_id desc
  ) as c
  where t.account_hk = c.account_hk and t.balance_date > c.closed_on
);
@create_unique_index(account_hk, balance_date);
@create_index(balance_date);
@analyze_table();
