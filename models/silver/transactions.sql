/* Transactions as received: one row per transaction version in a published raw batch (pending,
   booked, or a delete marker when the source cancelled it), typed, with the rules it breaks,
   judged against the history up to its own load time, so that a row once written never changes.
   A version held back because its account was not (yet) valid is emitted again, as a new row,
   when the account's first valid version arrives (`is_release`).
   Grain: transaction_id, batch_id, load_ts. */
MODEL (
  name silver.transactions,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (transaction_id, batch_id, load_ts),
  columns ( /* declared: the model reads its own history, so its table must exist before a first run */
    transaction_id bigint, transaction_hk text, account_hk text, account_transaction_hk text,
    hashdiff text, account_id bigint, reference text, transaction_type text, direction text,
    amount numeric(14, 2), currency char(3), status text, transaction_date date, booking_date date,
    counterparty text, description text, channel text, merchant_category text,
    counterparty_account_id bigint, counterparty_transaction_id bigint, booked_at timestamptz,
    created_at timestamptz, updated_at timestamptz, batch_id bigint, load_ts timestamptz, record_source text, is_deleted boolean,
    is_release boolean, is_valid boolean, dq_issues text[]
  ),
  audits (
    not_null(columns := (transaction_id, transaction_hk, batch_id, load_ts)),
    unique_combination_of_columns(columns := (transaction_id, batch_id, load_ts))
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
    lower(trim(channel)) as channel,
    nullif(lower(trim(merchant_category)), '') as merchant_category,
    counterparty_account_id::bigint as counterparty_account_id,
    counterparty_transaction_id::bigint as counterparty_transaction_id,
    booked_at::timestamptz as booked_at,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.transactions, @start_tstz, @end_tstz) as raw_rows
),
first_arrival_per_reference as (
  /* a re-posted payment repeats its reference under a new id: the id that brought the reference
     first (earliest load, then lowest id) is the real one, and stays so whatever comes later */
  select distinct on (reference) reference, transaction_id
  from (
    select reference, transaction_id, load_ts
    from silver.transactions
    where load_ts < @start_tstz and not is_deleted
      and reference in (select reference from versions)
    union all
    select reference, transaction_id, load_ts
    from versions
    where not is_deleted and reference is not null
  ) as arrivals
  order by reference, load_ts, transaction_id
),
judged as (
  select
    v.transaction_id,
    @hash_key(v.account_id) as account_hk,
    @hash_key(v.account_id, v.transaction_id) as account_transaction_hk,
    @hash_diff(v.account_id, v.reference, v.transaction_type, v.direction, v.amount, v.currency,
      v.status, v.transaction_date, v.booking_date, v.counterparty, v.description, v.channel,
      v.merchant_category, v.counterparty_account_id, v.counterparty_transaction_id,
      v.booked_at) as hashdiff,
    v.account_id, v.reference, v.transaction_type, v.direction, v.amount, v.currency, v.status,
    v.transaction_date, v.booking_date, v.counterparty, v.description, v.channel,
    v.merchant_category, v.counterparty_account_id, v.counterparty_transaction_id, v.booked_at,
    v.created_at,
    v.updated_at, v.batch_id, v.load_ts, v.record_source, v.is_deleted,
    false as is_release,
    array_remove(array[
      case when not v.is_deleted and v.account_id is null then 'account_missing' end,
      case when not v.is_deleted and (v.amount is null or v.amount <= 0) then 'amount_not_positive' end,
      case when not v.is_deleted and v.currency not in ('GBP', 'EUR', 'USD') then 'currency_unknown' end,
      case when not v.is_deleted and v.direction not in ('credit', 'debit') then 'direction_unknown' end,
      case when not v.is_deleted and v.status not in ('pending', 'booked') then 'status_unknown' end,
      /* the day the source recorded it, in the bank's zone */
      case when v.booking_date > (v.updated_at at time zone @VAR('bank_timezone'))::date
        then 'booking_date_in_future' end,
      case when not v.is_deleted and f.transaction_id <> v.transaction_id then 'duplicate' end,
      case when (
          select s.standing from silver.account_standing as s
          where s.account_id = v.account_id and s.load_ts <= v.load_ts
          order by s.load_ts desc limit 1
        ) = 'held' then 'account_invalid' end
    ], null) as dq_issues
  from versions as v
  left join first_arrival_per_reference as f on f.reference = v.reference
),
released_accounts as (
  /* accounts whose first valid version arrived in this interval after being held */
  select s.account_id, s.load_ts as released_at
  from silver.account_standing as s
  where s.standing = 'valid' and s.load_ts between @start_tstz and @end_tstz
    and exists (
      select 1 from silver.account_standing as h
      where h.account_id = s.account_id and h.standing = 'held' and h.load_ts < s.load_ts
    )
),
latest_before_release as (
  select distinct on (c.transaction_id) c.*, r.released_at
  from (
    select
      transaction_id, account_hk, account_transaction_hk, hashdiff, account_id, reference,
      transaction_type, direction, amount, currency, status, transaction_date, booking_date,
      counterparty, description, channel, merchant_category, counterparty_account_id,
      counterparty_transaction_id, booked_at, created_at, updated_at, batch_id, load_ts,
      record_source, is_deleted, is_release, dq_issues
    from silver.transactions
    where load_ts < @start_tstz and account_id in (select account_id from released_accounts)
    union all
    select * from judged where account_id in (select account_id from released_accounts)
  ) as c
  join released_accounts as r on r.account_id = c.account_id
  where c.load_ts <= r.released_at
  order by c.transaction_id, c.load_ts desc, c.batch_id desc
),
releases as (
  select
    transaction_id, account_hk, account_transaction_hk, hashdiff, account_id, reference,
    transaction_type, direction, amount, currency, status, transaction_date, booking_date,
    counterparty, description, channel, merchant_category, counterparty_account_id,
    counterparty_transaction_id, booked_at, created_at, updated_at, batch_id,
    released_at as load_ts,
    record_source, is_deleted, true as is_release,
    array_remove(dq_issues, 'account_invalid') as dq_issues
  from latest_before_release
  where 'account_invalid' = any(dq_issues)
),
verdicts as (
  select * from judged
  union all
  select * from releases
)
select
  transaction_id,
  @hash_key(transaction_id) as transaction_hk,
  account_hk,
  account_transaction_hk, /* the link's hash key */
  hashdiff,
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
  channel, /* branch, atm, online, mobile, card, or system (posted without the customer) */
  merchant_category, /* card payments: the merchant's MCC group */
  counterparty_account_id, /* internal transfers: the other leg's account */
  counterparty_transaction_id, /* internal transfers: the other leg */
  booked_at, /* the instant it was booked; null while pending */
  created_at,
  updated_at,
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  is_release, /* true: a version held back for its account, released when the account became valid */
  @verdict() /* is_valid (false keeps the row out of the vault and gold), dq_issues */
from verdicts;

@create_index(reference);
@create_index(transaction_id, load_ts);
@create_index(account_id, load_ts);
@create_index(load_ts);
@create_index(booking_date); /* gold's daily reconciliation audit reads a day's versions */
@analyze_table();
