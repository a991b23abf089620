/* Customers as received: one row per customer version in a published raw batch (a delete marker
   is a version too), trimmed and typed, with the data-quality rules it breaks. Insert-only: each
   hourly interval adds the versions published in it. Grain: customer_id, batch_id, load_ts. */
MODEL (
  name silver.customers,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (customer_id, batch_id, load_ts),
  audits (
    not_null(columns := (customer_id, customer_hk, batch_id, load_ts)),
    unique_combination_of_columns(columns := (customer_id, batch_id, load_ts))
  )
);

with versions as (
  select
    customer_id::bigint as customer_id,
    nullif(trim(first_name), '') as first_name,
    nullif(trim(last_name), '') as last_name,
    lower(nullif(trim(email), '')) as email,
    nullif(trim(phone), '') as phone,
    date_of_birth::date as date_of_birth,
    nullif(trim(address_line1), '') as address_line1,
    nullif(trim(city), '') as city,
    upper(nullif(trim(postcode), '')) as postcode,
    upper(trim(country))::char(2) as country,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.customers, @start_tstz, @end_tstz) as raw_rows
),
rules_broken as (
  select
    *,
    array_remove(array[
      case when not is_deleted and (first_name is null or last_name is null) then 'name_missing' end,
      case when email !~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$' then 'email_format' end
    ], null) as dq_issues
  from versions
)
select
  customer_id, /* the core-banking customer number */
  @hash_key(customer_id) as customer_hk, /* hash of the business key */
  @hash_diff(first_name, last_name, email, phone, date_of_birth, address_line1, city, postcode, country) as hashdiff,
  first_name,
  last_name,
  email,
  phone,
  date_of_birth,
  address_line1,
  city,
  postcode,
  country,
  created_at,
  updated_at,
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  @verdict() /* is_valid (false keeps the row out of the vault and gold), dq_issues */
from rules_broken;

@create_index(customer_id, load_ts);
@create_index(load_ts);
@analyze_table();
