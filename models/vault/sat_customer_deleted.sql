/* Record tracking of source deletes for customers: a row each time a key's presence in the
   source changes (deleted: the source no longer has it; back: it sent the key again). Insert-
   only; the key's history stays in the other satellites. Grain: customer_hk, load_ts. */
MODEL (
  name vault.sat_customer_deleted,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (customer_hk, load_ts),
  columns (
    customer_hk text, load_ts timestamptz, is_deleted boolean, record_source text
  ),
  audits (
    not_null(columns := (customer_hk, load_ts, is_deleted)),
    unique_combination_of_columns(columns := (customer_hk, load_ts))
  )
);

select * from @record_tracking_sat(
  hash_key := customer_hk,
  business_key := customer_id,
  source := silver.customers,
  hub := vault.hub_customer
) as tracking;

@create_index(customer_hk, load_ts);
@create_index(load_ts);
@analyze_table();
