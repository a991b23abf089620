/* Hub of customers: one row per customer number, with the load that first brought it and its
   record source. The core bank sends customers, but a CRM feed may name one first (an
   interaction with a brand-new customer): the first arrival wins, and the core bank's later one
   adds nothing. Insert-only. Grain: customer_hk. */
MODEL (
  name vault.hub_customer,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain customer_hk,
  columns (
    customer_hk text, customer_id bigint, load_ts timestamptz, record_source text
  ),
  audits (
    not_null(columns := (customer_hk, customer_id, load_ts, record_source)),
    unique_keys(column := customer_hk)
  )
);

select * from @hub(
  hash_key := customer_hk,
  business_key := customer_id,
  sources := (
    silver.customers,
    silver.interactions,
    silver.opportunities,
    silver.orders
  )
) as hub;

@create_index(customer_hk);
@create_index(load_ts);
@analyze_table();
