/* Descriptive history of customers: a row each time a customer's attributes change (A, B, A keeps
   three rows; A, A keeps one). Insert-only. Grain: customer_hk, load_ts. */
MODEL (
  name vault.sat_customer_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (customer_hk, load_ts),
  columns (
    customer_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, created_at timestamptz, first_name text, last_name text, email text, phone text,
    date_of_birth date, address_line1 text, city text, postcode text, country char(2)
  ),
  audits (
    not_null(columns := (customer_hk, load_ts, hashdiff)),
    unique_combination_of_columns(columns := (customer_hk, load_ts))
  )
);

with versions_in_interval as (
  select *
  from silver.customers
  where is_valid and not is_deleted and load_ts between @start_tstz and @end_tstz
),
latest_before_interval as materialized (
  /* read once, before the first row is written: planned on the empty table of a first build, a
     lookup of it per written row rescans what the statement has written (quadratic) */
  select distinct on (customer_hk) customer_hk, hashdiff
  from vault.sat_customer_details
  where load_ts < @start_tstz and customer_hk in (select customer_hk from versions_in_interval)
  order by customer_hk, load_ts desc
),
sequenced as (
  select
    v.*,
    coalesce(
      lag(v.hashdiff) over (partition by v.customer_hk order by v.load_ts, v.batch_id),
      l.hashdiff
    ) as previous_hashdiff
  from versions_in_interval as v
  left join latest_before_interval as l on l.customer_hk = v.customer_hk
)
select
  customer_hk,
  /* versions of one key published together (two batches) keep their batch order, a microsecond
     apart: the grain stays (key, load time) */
  load_ts + (row_number() over (partition by customer_hk, load_ts order by batch_id) - 1)
    * interval '1 microsecond' as load_ts,
  hashdiff,
  record_source,
  updated_at as effective_from, /* when the source recorded this version */
  created_at, /* when the source created the customer (not part of the hashdiff) */
  first_name,
  last_name,
  email,
  phone,
  date_of_birth,
  address_line1,
  city,
  postcode,
  country
from (select * from sequenced where previous_hashdiff is distinct from hashdiff) as changes;

@create_index(customer_hk, load_ts);
@create_index(load_ts);
@analyze_table();
