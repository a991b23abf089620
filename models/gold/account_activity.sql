/* Activity of every account gold holds: one row per account with its last transaction, its last
   customer-initiated one, whether it is dormant, and its current balance. Dormant: no
   customer-initiated transaction (channel other than 'system': fees, interest, direct debits and
   payments from other banks do not count) within the last DORMANT_AFTER_MONTHS months (12 by
   default; the setting reaches SQLMesh as the variable dormant_after_months) before the run's day
   in the bank's zone; an account that never had one counts from its first day. FULL: it is
   rebuilt each run, but reads per-account rows only: for each account the latest row of
   gold.fact_account_daily_balance and its latest facts, by index (account_hk, balance_date /
   booking_date), never all transactions: its cost grows with accounts, not with history.
   Grain: account_hk. */
MODEL (
  name gold.account_activity,
  kind FULL,
  grain account_hk,
  audits (
    not_null(columns := (account_hk, account_id, current_balance, is_dormant)),
    unique_values(columns := (account_hk))
  )
);

with accounts as (
  select distinct on (d.account_hk) d.account_hk, d.currency, d.status, d.opened_on, d.closed_on
  from vault.sat_account_details as d
  where d.account_hk in (select account_hk from vault.hub_account)
  order by d.account_hk, d.effective_from desc, d.batch_id desc
),
run_day as (
  select (@execution_tstz at time zone @VAR('bank_timezone'))::date as today
)
select
  a.account_hk, /* the account (hash key, joins gold.dim_account) */
  h.account_id, /* core-banking account id */
  a.currency, /* the account's currency: the balance is in it */
  a.status, /* open, dormant or closed, as the source says */
  a.opened_on, /* date the account was opened */
  a.closed_on, /* date it was closed; null while not closed */
  last_any.booking_date::date as last_transaction_date, /* booking date of its latest booked transaction; null when none */
  last_customer.booking_date::date as last_customer_initiated_date, /* booking date of its latest transaction made by the customer (channel other than system); null when none */
  a.closed_on is null and coalesce(last_customer.booking_date, balance.first_day, a.opened_on)
    < r.today - make_interval(months => @VAR('dormant_after_months')::int) as is_dormant, /* no customer-initiated transaction within dormant_after_months (12) months before today, counted from the first day when it never had one; closed accounts are not dormant */
  coalesce(balance.closing_balance, 0)::numeric(16, 2) as current_balance, /* closing balance of its latest day in gold.fact_account_daily_balance */
  balance.balance_date::date as balance_as_of, /* that day */
  coalesce(balance.booked_transactions_to_date, 0)::bigint as booked_transactions /* booked transactions gold holds for it */
from accounts as a
join vault.hub_account as h on h.account_hk = a.account_hk
cross join run_day as r
left join lateral (
  select t.closing_balance, t.balance_date, t.booked_transactions_to_date,
    (select min(f.balance_date) from gold.fact_account_daily_balance as f where f.account_hk = a.account_hk) as first_day
  from gold.fact_account_daily_balance as t
  where t.account_hk = a.account_hk
  order by t.balance_date desc limit 1
) as balance on true
left join lateral (
  select f.booking_date from gold.fact_transactions as f
  where f.account_hk = a.account_hk
  order by f.booking_date desc limit 1
) as last_any on true
left join lateral (
  select f.booking_date from gold.fact_transactions as f
  where f.account_hk = a.account_hk and f.is_customer_initiated
  order by f.booking_date desc limit 1
) as last_customer on true
