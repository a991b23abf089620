/* Accounts as received: one row per account version loaded into raw, trimmed and typed, with the
   rules it breaks (sort code, account number, IBAN). Grain: account_id, batch_id. */
MODEL (
  name silver.accounts,
  kind FULL,
  grain (account_id, batch_id),
  audits (
    not_null(columns := (account_id, account_hk, batch_id, load_ts)),
    unique_combination_of_columns(columns := (account_id, batch_id))
  )
);

with versions as (
  select
    account_id::bigint as account_id,
    nullif(trim(product_id), '') as product_id,
    nullif(trim(sort_code), '') as sort_code,
    nullif(trim(account_number), '') as account_number,
    upper(replace(nullif(trim(iban), ''), ' ', '')) as iban,
    upper(trim(currency))::char(3) as currency,
    lower(trim(status)) as status,
    opened_on::date as opened_on,
    closed_on::date as closed_on,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.accounts) as raw_rows
),
rules_broken as (
  select
    v.*,
    array_remove(array[
      case when not v.is_deleted and coalesce(v.sort_code, '') !~ '^[0-9]{2}-[0-9]{2}-[0-9]{2}$' then 'sort_code_format' end,
      case when not v.is_deleted and coalesce(v.account_number, '') !~ '^[0-9]{8}$' then 'account_number_format' end,
      case when not v.is_deleted and coalesce(i.is_valid, false) = false then 'iban_invalid' end,
      case when not v.is_deleted and substr(v.iban, 9) is distinct from replace(v.sort_code, '-', '') || v.account_number
        then 'iban_mismatch' end,
      case when not v.is_deleted and v.currency not in ('GBP', 'EUR', 'USD') then 'currency_unknown' end
    ], null) as dq_issues
  from versions as v
  left join silver.iban_checks as i on i.iban = v.iban
)
select
  account_id, /* the core-banking account number (internal id) */
  @hash_key(account_id) as account_hk,
  @hash_diff(product_id, sort_code, account_number, iban, currency, status, opened_on, closed_on) as hashdiff,
  product_id,
  sort_code,
  account_number,
  iban,
  currency,
  status,
  opened_on,
  closed_on,
  created_at,
  updated_at,
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  @version_flags(account_id) /* is_valid (false keeps the row out of the vault and gold), dq_issues, is_latest */
from rules_broken
