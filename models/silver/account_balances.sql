/* The core bank's ledger as received: one row per ledger version in a published raw batch (a new
   version each time the source books on the account; a delete marker is a version too), typed.
   The source keeps it as transactions book: balance = opening_balance + booked credits - booked
   debits over the account's bookings with booked_at <= updated_at, bad records included
   (sql/source/corebank.sql). Insert-only, like every silver table of a source: the ledger "as
   loaded" is `silver.current_account_balances`. The ledger of an account whose account row is held
   back (account_invalid for its transactions) is not held back with it: it is the source's own
   figure, and reaches the vault's ledger satellite, where gold finds it when the account is
   released (a ledger is never linked to anything, so no link points at a missing hub key).
   Grain: account_id, batch_id, load_ts. */
MODEL (
  name silver.account_balances,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (account_id, batch_id, load_ts),
  audits (
    not_null(columns := (account_id, account_hk, batch_id, load_ts)),
    unique_combination_of_columns(columns := (account_id, batch_id, load_ts))
  )
);

with versions as (
  select
    account_id::bigint as account_id,
    upper(trim(currency))::char(3) as currency,
    opening_balance::numeric(14, 2) as opening_balance,
    balance::numeric(14, 2) as balance,
    booked_transactions::bigint as booked_transactions,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.account_balances, @start_tstz, @end_tstz) as raw_rows
),
judged as (
  select
    v.*,
    array_remove(array[
      case when not v.is_deleted and v.currency not in ('GBP', 'EUR', 'USD') then 'currency_unknown' end,
      case when not v.is_deleted and (v.opening_balance is null or v.balance is null) then 'balance_missing' end
    ], null) as dq_issues
  from versions as v
)
select
  account_id, /* core-banking account id */
  @hash_key(account_id) as account_hk,
  currency, /* the account's currency; every amount of the row is in it */
  opening_balance, /* opening deposit, or the balance brought forward for accounts the bank had on day 0 */
  balance, /* the source's ledger balance: opening + booked credits - booked debits up to updated_at */
  booked_transactions, /* bookings the balance holds */
  created_at, /* when the account and its ledger opened */
  updated_at, /* booked_at of the latest booking the balance holds */
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  @verdict() /* is_valid (false keeps the row out of the vault), dq_issues */
from judged;

@create_index(account_id, load_ts);
@create_index(load_ts);
@analyze_table();
