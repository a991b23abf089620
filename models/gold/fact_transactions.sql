/* Booked transactions: one row per transaction booked in the core bank and not deleted there, as
   its latest version says. Pending ones wait; cancelled ones never arrive; one deleted after it was
   written is removed. Incremental by key: each run upserts only the transactions whose vault rows
   changed in its interval. Grain: transaction_hk. */
MODEL (
  name gold.fact_transactions,
  kind INCREMENTAL_BY_UNIQUE_KEY (unique_key transaction_hk),
  cron '@hourly',
  grain transaction_hk,
  /* the rows a run wrote (the unique index keeps the grain across runs): audits cost what is new */
  audits (
    not_null(
      columns := (transaction_hk, transaction_id, account_hk, amount, booking_date),
      condition := loaded_at >= @start_tstz
    ),
    unique_values(columns := (transaction_hk), condition := loaded_at >= @start_tstz),
    accepted_range(column := amount, min_v := 0, inclusive := false, condition := loaded_at >= @start_tstz)
  )
);

with changed_keys as (
  select transaction_hk from vault.sat_transaction_details
  where load_ts between @start_tstz and @end_tstz
  union
  select transaction_hk from vault.sat_transaction_counterparty
  where load_ts between @start_tstz and @end_tstz
  union
  select transaction_hk from vault.sat_transaction_deleted
  where load_ts between @start_tstz and @end_tstz
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
)
select
  h.transaction_hk, /* Data Vault hash key of the transaction */
  h.transaction_id, /* core-banking transaction id */
  l.account_hk, /* the account it was booked on (hash key, joins gold.dim_account) */
  v.account_id, /* core-banking account id */
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
from latest_versions as v
join vault.hub_transaction as h on h.transaction_hk = v.transaction_hk
join vault.link_account_transaction as l on l.transaction_hk = v.transaction_hk
left join latest_counterparties as cp on cp.transaction_hk = v.transaction_hk
where v.status = 'booked'
  and v.transaction_hk not in (select transaction_hk from deleted_in_source);

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
@create_index(account_id, booked_at); /* gold.aml_alerts reads an account's recent facts */
@analyze_table();
