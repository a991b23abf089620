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
  /* each key's hashdiff before the interval, as one lookup object built before the first row is
     written: a join would be planned as a nested loop on the model's own table while it fills
     (a first build: quadratic) or, on stale statistics, over this CTE once per version */
  select coalesce(jsonb_object_agg(customer_hk, hashdiff), '{}') as hashdiffs
  from (
    select distinct on (customer_hk) customer_hk, hashdiff
    from vault.sat_customer_details
    where load_ts < @start_tstz and customer_hk in (select customer_hk from versions_in_interval)
    order by customer_hk, load_ts desc
  ) as latest
),
sequenced as (
  select
    v.*,
    lag(v.hashdiff) over (partition by v.customer_hk order by v.load_ts, v.batch_id) as previous_in_interval
  from versions_in_interval as v
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
from (
  /* the lookup after the window, so that its sort never carries the lookup object (the function,
     not `->>`, which sqlglot renders as json_extract_path_text) */
  select s.* from sequenced as s cross join latest_before_interval as l
  where coalesce(s.previous_in_interval, jsonb_extract_path_text(l.hashdiffs, s.customer_hk)) is distinct from s.hashdiff
) as changes;

@create_index(customer_hk, load_ts);
@create_index(load_ts);
@analyze_table();
