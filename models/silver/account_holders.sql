/* Who holds which account, as received: one row per holding version loaded into raw (joint accounts
   have several holders; a holding ends when valid_to is set). Grain: account_id, customer_id, valid_from, batch_id. */
MODEL (
  name silver.account_holders,
  kind FULL,
  grain (account_id, customer_id, valid_from, batch_id),
  audits (
    not_null(columns := (account_id, customer_id, customer_account_hk, batch_id)),
    unique_combination_of_columns(columns := (account_id, customer_id, valid_from, batch_id))
  )
);

with versions as (
  select
    account_id::bigint as account_id,
    customer_id::bigint as customer_id,
    lower(trim(holder_role)) as holder_role,
    valid_from::date as valid_from,
    valid_to::date as valid_to,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.account_holders) as raw_rows
),
rules_broken as (
  select
    v.*,
    array_remove(array[
      case when not v.is_deleted and v.holder_role not in ('primary', 'joint') then 'holder_role_unknown' end,
      case when v.valid_to < v.valid_from then 'validity_reversed' end,
      case when n.account_id is not null then 'account_invalid' end
    ], null) as dq_issues
  from versions as v
  left join silver.accounts_held_back as n on n.account_id = v.account_id
)
select
  account_id,
  customer_id,
  @hash_key(customer_id) as customer_hk,
  @hash_key(account_id) as account_hk,
  @hash_key(customer_id, account_id) as customer_account_hk, /* the link's hash key */
  holder_role,
  valid_from,
  valid_to,
  created_at,
  updated_at,
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  @version_flags(account_id, customer_id, valid_from) /* is_valid (false keeps the row out of the vault and gold), dq_issues, is_latest */
from rules_broken
