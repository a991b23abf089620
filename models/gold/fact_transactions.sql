/* Booked transactions: one row per transaction booked in the core bank, as its latest version
   says. Pending ones wait; cancelled ones never arrive. Grain: transaction_hk. */
MODEL (
  name gold.fact_transactions,
  kind FULL,
  grain transaction_hk,
  audits (
    not_null(columns := (transaction_hk, transaction_id, account_hk, amount, booking_date)),
    unique_values(columns := (transaction_hk)),
    accepted_range(column := amount, min_v := 0, inclusive := false)
  )
);

with latest_versions as (
  select distinct on (transaction_hk) *
  from vault.sat_transaction_details
  order by transaction_hk, load_ts desc
),
deleted_in_source as (
  /* record tracking arrives with the full vault; until then silver knows which keys were deleted */
  select transaction_hk
  from silver.transactions
  where is_latest and is_deleted
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
  v.counterparty, /* the other party, when known */
  v.description, /* free-text description */
  v.load_ts as loaded_at /* when the warehouse received the booked version */
from latest_versions as v
join vault.hub_transaction as h on h.transaction_hk = v.transaction_hk
join vault.link_account_transaction as l on l.transaction_hk = v.transaction_hk
where v.status = 'booked'
  and v.transaction_hk not in (select transaction_hk from deleted_in_source)
