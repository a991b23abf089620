/* Transactions as received: one row per transaction version loaded into raw (pending, booked, or a
   delete marker when the source cancelled it), typed, with the rules it breaks. Grain: transaction_id, batch_id. */
MODEL (
  name silver.transactions,
  kind FULL,
  grain (transaction_id, batch_id),
  audits (
    not_null(columns := (transaction_id, transaction_hk, batch_id, load_ts)),
    unique_combination_of_columns(columns := (transaction_id, batch_id))
  )
);

with versions as (
  select
    transaction_id::bigint as transaction_id,
    account_id::bigint as account_id,
    nullif(trim(reference), '') as reference,
    lower(trim(transaction_type)) as transaction_type,
    lower(trim(direction)) as direction,
    amount::numeric(14, 2) as amount,
    upper(trim(currency))::char(3) as currency,
    lower(trim(status)) as status,
    transaction_date::date as transaction_date,
    booking_date::date as booking_date,
    nullif(trim(counterparty), '') as counterparty,
    nullif(trim(description), '') as description,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.transactions) as raw_rows
),
first_transaction_per_reference as (
  /* a re-posted payment repeats its reference under a new id: the first id is the real one */
  select reference, min(transaction_id) as transaction_id
  from versions
  where not is_deleted
  group by reference
),
rules_broken as (
  select
    v.*,
    array_remove(array[
      case when not v.is_deleted and v.account_id is null then 'account_missing' end,
      case when not v.is_deleted and (v.amount is null or v.amount <= 0) then 'amount_not_positive' end,
      case when not v.is_deleted and v.currency not in ('GBP', 'EUR', 'USD') then 'currency_unknown' end,
      case when not v.is_deleted and v.direction not in ('credit', 'debit') then 'direction_unknown' end,
      case when not v.is_deleted and v.status not in ('pending', 'booked') then 'status_unknown' end,
      case when v.booking_date > (v.updated_at at time zone @VAR('bank_timezone'))::date
        then 'booking_date_in_future' end, /* the day the source recorded it, in the bank's zone */
      case when not v.is_deleted and f.transaction_id <> v.transaction_id then 'duplicate' end,
      case when n.account_id is not null then 'account_invalid' end
    ], null) as dq_issues
  from versions as v
  left join first_transaction_per_reference as f on f.reference = v.reference
  left join silver.accounts_held_back as n on n.account_id = v.account_id
)
select
  transaction_id,
  @hash_key(transaction_id) as transaction_hk,
  @hash_key(account_id) as account_hk,
  @hash_key(account_id, transaction_id) as account_transaction_hk, /* the link's hash key */
  @hash_diff(account_id, reference, transaction_type, direction, amount, currency, status,
    transaction_date, booking_date, counterparty, description) as hashdiff,
  account_id,
  reference,
  transaction_type,
  direction,
  amount, /* positive, as the source books it */
  currency,
  status,
  transaction_date,
  booking_date,
  counterparty,
  description,
  created_at,
  updated_at,
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  @version_flags(transaction_id) /* is_valid (false keeps the row out of the vault and gold), dq_issues, is_latest */
from rules_broken
