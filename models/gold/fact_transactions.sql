/* Booked transactions: one row per transaction booked in the core bank and not deleted there, as
   its latest version says, with the keys of the dimension versions in effect when it was booked
   (booked_at): the account's version, its primary holder's customer version, the product's version
   and the booking day. Pending ones wait; cancelled ones never arrive; one deleted after it was
   written is removed. Incremental by key: each run upserts the transactions whose vault rows
   changed in its interval, and re-keys the facts a dimension change of the interval reaches (a
   late version placed before facts already written; see "Late dimension changes" in the README).
   Grain: transaction_hk. */
MODEL (
  name gold.fact_transactions,
  kind INCREMENTAL_BY_UNIQUE_KEY (unique_key transaction_hk),
  depends_on (silver.transactions), -- its daily reconciliation audit reads it
  cron '@hourly',
  grain transaction_hk,
  columns ( /* declared: the model reads its own rows to re-key them, so its table must exist first */
    transaction_hk text, transaction_id bigint, account_hk text, account_id bigint,
    account_version_key text, primary_customer_id bigint, primary_customer_hk text,
    customer_version_key text, product_hk text, product_version_key text, date_key int,
    reference text, transaction_type text, direction text, amount numeric(14, 2),
    signed_amount numeric(14, 2), currency char(3), transaction_date date, booking_date date,
    booked_at timestamptz, channel text, is_customer_initiated boolean, merchant_category text,
    counterparty_account_id bigint, counterparty_account_hk text,
    counterparty_transaction_id bigint, counterparty text, description text,
    loaded_at timestamptz
  ),
  /* the rows a run wrote (the unique index keeps the grain across runs): audits cost what is new */
  audits (
    not_null(
      columns := (transaction_hk, transaction_id, account_hk, amount, booking_date, booked_at, date_key, account_version_key),
      condition := loaded_at >= @start_tstz
    ),
    unique_values(columns := (transaction_hk), condition := loaded_at >= @start_tstz),
    accepted_range(column := amount, min_v := 0, inclusive := false, condition := loaded_at >= @start_tstz),
    accepted_values(
      column := channel, is_in := ('branch', 'atm', 'online', 'mobile', 'card', 'system'),
      condition := loaded_at >= @start_tstz
    ),
    /* reconciliation: per day and currency, the facts equal silver's booked, valid versions */
    daily_totals_match_silver
  )
);

with account_changes as (
  /* accounts whose versions the interval changed, from the earliest instant it changed */
  select account_hk, min(valid_from) as since
  from gold.dim_account
  where loaded_at between @start_tstz and @end_tstz
  group by account_hk
),
customer_changes as (
  select customer_hk, min(valid_from) as since
  from gold.dim_customer
  where loaded_at between @start_tstz and @end_tstz
  group by customer_hk
),
product_changes as (
  select product_hk, min(valid_from) as since
  from gold.dim_product
  where loaded_at between @start_tstz and @end_tstz
  group by product_hk
),
holding_changes as (
  /* a holding that starts, ends or changes role moves the primary holder from its start on */
  select account_hk, min(valid_from::timestamp at time zone @VAR('bank_timezone')) as since
  from silver.account_holders
  where load_ts between @start_tstz and @end_tstz
  group by account_hk
),
changed_keys as (
  select transaction_hk from @keys_loaded(
    transaction_hk,
    vault.sat_transaction_details, vault.sat_transaction_counterparty, vault.sat_transaction_deleted
  ) as loaded
  union
  /* facts written earlier whose dimension version at booking time may have changed: a late
     version lands before them, or a first version arrives after them (their key was empty) */
  select f.transaction_hk from @this_model as f
  join account_changes as c on c.account_hk = f.account_hk
  where f.booked_at >= c.since or f.account_version_key is null
  union
  select f.transaction_hk from @this_model as f
  join holding_changes as c on c.account_hk = f.account_hk
  where f.booked_at >= c.since or f.primary_customer_hk is null
  union
  select f.transaction_hk from @this_model as f
  join customer_changes as c on c.customer_hk = f.primary_customer_hk
  where f.booked_at >= c.since or f.customer_version_key is null
  union
  select f.transaction_hk from @this_model as f
  join product_changes as c on c.product_hk = f.product_hk
  where f.booked_at >= c.since or f.product_version_key is null
),
latest_versions as (
  /* the latest version in source order, as the vault held it at the interval's end */
  select distinct on (s.transaction_hk) s.*
  from vault.sat_transaction_details as s
  join changed_keys as c on c.transaction_hk = s.transaction_hk
  where s.load_ts <= @end_tstz
  order by s.transaction_hk, s.effective_from desc, s.batch_id desc
),
latest_counterparties as (
  select distinct on (s.transaction_hk) s.*
  from vault.sat_transaction_counterparty as s
  join changed_keys as c on c.transaction_hk = s.transaction_hk
  where s.load_ts <= @end_tstz
  order by s.transaction_hk, s.effective_from desc, s.batch_id desc
),
deleted_in_source as (
  select transaction_hk
  from (
    select distinct on (d.transaction_hk) d.transaction_hk, d.is_deleted
    from vault.sat_transaction_deleted as d
    join changed_keys as c on c.transaction_hk = d.transaction_hk
    where d.load_ts <= @end_tstz
    order by d.transaction_hk, d.load_ts desc
  ) as latest_state
  where is_deleted
),
booked_facts as (
  select
    v.*,
    l.account_hk,
    /* the instant it was booked; a booked version always has it, the day's start is a fallback */
    coalesce(v.booked_at, v.booking_date::timestamp at time zone @VAR('bank_timezone')) as booked_instant,
    (coalesce(v.booked_at, v.booking_date::timestamp at time zone @VAR('bank_timezone'))
      at time zone @VAR('bank_timezone'))::date as booked_day
  from latest_versions as v
  join vault.link_account_transaction as l on l.transaction_hk = v.transaction_hk
  where v.status = 'booked'
    and v.transaction_hk not in (select transaction_hk from deleted_in_source)
),
account_versions_at_booking as (
  select b.transaction_hk, a.account_version_key, a.product_id
  from booked_facts as b
  join gold.dim_account as a
    on a.account_hk = b.account_hk
    and a.valid_from <= b.booked_instant
    and (a.valid_to is null or b.booked_instant < a.valid_to)
),
primary_holders_at_booking as (
  /* the holding in effect on the booking day (start inclusive, end exclusive, as the vault's
     effectivity satellite reads them); the latest started if the source sent two */
  select distinct on (b.transaction_hk) b.transaction_hk, ah.customer_id, ah.customer_hk
  from booked_facts as b
  join silver.current_account_holders as ah
    on ah.account_id = b.account_id
    and ah.holder_role = 'primary' and ah.is_valid and not ah.is_deleted
    and ah.valid_from <= b.booked_day
    and (ah.valid_to is null or b.booked_day < ah.valid_to)
  order by b.transaction_hk, ah.valid_from desc, ah.customer_id
),
customer_versions_at_booking as (
  /* the holder's version in effect at booking; a holding can start (and its account book an
     opening deposit) minutes before the customer record's creation time, from which
     gold.dim_customer's first version holds: such a booking takes the first version */
  select distinct on (b.transaction_hk) b.transaction_hk, c.customer_version_key
  from booked_facts as b
  join primary_holders_at_booking as ph on ph.transaction_hk = b.transaction_hk
  join gold.dim_customer as c
    on c.customer_hk = ph.customer_hk
    and (c.valid_to is null or b.booked_instant < c.valid_to)
  order by b.transaction_hk, c.valid_from <= b.booked_instant desc, c.valid_from desc
),
product_versions_at_booking as (
  select b.transaction_hk, p.product_hk, p.product_version_key
  from booked_facts as b
  join account_versions_at_booking as av on av.transaction_hk = b.transaction_hk
  join gold.dim_product as p
    on p.product_id = av.product_id
    and p.valid_from <= b.booked_instant
    and (p.valid_to is null or b.booked_instant < p.valid_to)
)
select
  h.transaction_hk, /* Data Vault hash key of the transaction */
  h.transaction_id, /* core-banking transaction id */
  v.account_hk, /* the account it was booked on (hash key, joins gold.dim_account) */
  v.account_id, /* core-banking account id */
  av.account_version_key, /* the account's version in effect when it was booked (gold.dim_account) */
  ph.customer_id as primary_customer_id, /* the account's primary holder on the booking day */
  ph.customer_hk as primary_customer_hk, /* that holder's hash key (joins gold.dim_customer) */
  cv.customer_version_key, /* that holder's version in effect when it was booked (gold.dim_customer) */
  pv.product_hk, /* the product the account was held under when it was booked (hash key) */
  pv.product_version_key, /* that product's version in effect when it was booked (gold.dim_product) */
  to_char(v.booking_date, 'YYYYMMDD')::int as date_key, /* the booking date as yyyymmdd (gold.dim_date) */
  v.reference, /* payment reference */
  v.transaction_type, /* deposit, card_payment, transfer_in, transfer_out, direct_debit, fee or interest */
  v.direction, /* credit or debit */
  v.amount, /* amount as booked, always positive */
  case when v.direction = 'debit' then -v.amount else v.amount end as signed_amount, /* credit positive, debit negative */
  v.currency, /* ISO 4217 currency */
  v.transaction_date, /* date the customer initiated it */
  v.booking_date, /* date it was booked */
  v.booked_at, /* the instant it was booked (AML rules measure their windows on it) */
  v.channel, /* branch, atm, online, mobile, card, or system (posted without the customer) */
  v.channel <> 'system' as is_customer_initiated, /* made by the customer, not posted by the bank or another bank */
  v.merchant_category, /* card payments: groceries, restaurants, travel, fuel, retail or health */
  v.counterparty_account_id, /* internal transfers: the bank's account on the other side */
  case when v.counterparty_account_id is not null then @hash_key(v.counterparty_account_id) end as counterparty_account_hk, /* its hash key (joins gold.dim_account) */
  v.counterparty_transaction_id, /* internal transfers: the other leg's transaction id */
  cp.counterparty, /* the other party, when known */
  cp.description, /* free-text description */
  v.load_ts as loaded_at /* when the warehouse received the booked version */
from booked_facts as v
join vault.hub_transaction as h on h.transaction_hk = v.transaction_hk
left join latest_counterparties as cp on cp.transaction_hk = v.transaction_hk
left join account_versions_at_booking as av on av.transaction_hk = v.transaction_hk
left join primary_holders_at_booking as ph on ph.transaction_hk = v.transaction_hk
left join customer_versions_at_booking as cv on cv.transaction_hk = v.transaction_hk
left join product_versions_at_booking as pv on pv.transaction_hk = v.transaction_hk;

/* A transaction deleted in the source after its fact was written leaves the fact (the upsert above
   only adds and replaces rows). */
@IF(
  @runtime_stage = 'evaluating',
  delete from @this_model as f
  using vault.sat_transaction_deleted as d
  where d.transaction_hk = f.transaction_hk
    and d.load_ts between @start_tstz and @end_tstz and d.is_deleted
    and not exists (
      select 1 from vault.sat_transaction_deleted as later
      where later.transaction_hk = d.transaction_hk and later.load_ts > d.load_ts
        and later.load_ts <= @end_tstz
    )
);
@create_unique_index(transaction_hk);
@create_index(loaded_at);
/* the re-keying lookups (a changed account, customer or product's facts from an instant on),
   gold.fact_account_daily_balance and the reconciliation audits (an account's facts by day and
   by booking instant) */
@create_index(account_hk, booked_at);
@create_index(account_hk, booking_date);
@create_index(primary_customer_hk, booked_at);
@create_index(product_hk, booked_at);
/* marts that read a window of days (gold.customer_360: the last 90) */
@create_index(booking_date);
/* gold.aml_alerts reads an account's recent facts */
@create_index(account_id, booked_at);
@analyze_table();
