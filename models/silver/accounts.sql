/* Accounts as received: one row per account version in a published raw batch, trimmed and typed,
   with the rules it breaks (sort code, account number, IBAN). Insert-only: each hourly interval
   adds the versions published in it. Grain: account_id, batch_id, load_ts. */
MODEL (
  name silver.accounts,
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
  from @published(raw.accounts, @start_tstz, @end_tstz) as raw_rows
),
rules_broken as (
  select
    v.*,
    array_remove(array[
      case when not v.is_deleted and coalesce(v.sort_code, '') !~ '^[0-9]{2}-[0-9]{2}-[0-9]{2}$' then 'sort_code_format' end,
      case when not v.is_deleted and coalesce(v.account_number, '') !~ '^[0-9]{8}$' then 'account_number_format' end,
      case when not v.is_deleted and not exists (
          select 1 from silver.iban_checks as i where i.iban = v.iban and i.is_valid
        ) then 'iban_invalid' end,
      case when not v.is_deleted and substr(v.iban, 9) is distinct from replace(v.sort_code, '-', '') || v.account_number
        then 'iban_mismatch' end,
      case when not v.is_deleted and v.currency not in ('GBP', 'EUR', 'USD') then 'currency_unknown' end
    ], null) as dq_issues
  from versions as v
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
  array_remove(array[
    case when not is_deleted and product_id is null then 'product_missing' end
  ], null) as dq_warnings, /* reported, not blocking: the account loads, its product link does not */
  @verdict() /* is_valid (false keeps the row out of the vault and gold), dq_issues */
from rules_broken;

@create_index(account_id, load_ts);
@create_index(load_ts);
@analyze_table();
