/* Accounts, current state: one row per account with its product and primary holder. FULL: it
   grows with accounts, not with transactions. Grain: account_hk. */
MODEL (
  name gold.dim_account,
  kind FULL,
  grain account_hk,
  audits (
    not_null(columns := (account_hk, account_id, currency, status)),
    unique_values(columns := (account_hk))
  )
);

with current_details as (
  /* the latest version in source order (a late row is older than the rows it arrived after) */
  select distinct on (account_hk) *
  from vault.sat_account_details
  order by account_hk, effective_from desc, batch_id desc
),
primary_holders as (
  select distinct on (account_id) account_id, customer_id
  from silver.current_account_holders
  where is_valid and not is_deleted and holder_role = 'primary'
  order by account_id, valid_from desc
),
holder_counts as (
  select account_id, count(*) as holder_count
  from silver.current_account_holders
  where is_valid and not is_deleted and valid_to is null
  group by account_id
)
select
  h.account_hk, /* Data Vault hash key of the account */
  h.account_id, /* core-banking account id */
  d.product_id, /* product the account is held under */
  p.name as product_name, /* product name */
  p.category as product_category, /* current, savings, credit_card or loan */
  d.sort_code, /* UK sort code, NN-NN-NN */
  d.account_number, /* 8-digit account number */
  d.iban, /* GB IBAN */
  d.currency, /* ISO 4217 currency of the account */
  d.status, /* open, dormant or closed */
  d.opened_on, /* date the account was opened */
  d.closed_on, /* date the account was closed; null while not closed */
  ph.customer_id as primary_customer_id, /* the primary holder */
  coalesce(hc.holder_count, 0) as holder_count, /* current holders; more than one for a joint account */
  d.effective_from as details_as_of /* when the source last changed these details */
from vault.hub_account as h
join current_details as d on d.account_hk = h.account_hk
left join silver.current_products as p on p.product_id = d.product_id and not p.is_deleted
left join primary_holders as ph on ph.account_id = h.account_id
left join holder_counts as hc on hc.account_id = h.account_id
