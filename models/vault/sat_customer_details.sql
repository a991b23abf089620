/* Non-personal attributes of customers: country, and when the core bank created the customer.
   Personal data lives in sat_customer_personal, so that access to it can differ. Insert-only: a
   row when a version differs from the one before it in source order (late versions kept, in
   order). Grain: customer_hk, load_ts. */
MODEL (
  name vault.sat_customer_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (customer_hk, load_ts),
  columns (
    customer_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, country char(2), created_at timestamptz
  ),
  audits (
    not_null(columns := (customer_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (customer_hk, load_ts)),
    no_repeated_hashdiff(partition := (customer_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := customer_hk,
  business_key := customer_id,
  source := silver.customers,
  payload := (country, created_at)
) as sat;

@create_index(customer_hk, load_ts);
@create_index(customer_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
