/* Hub of product orders: one row per order id, first load and record source. Insert-only. Grain:
   order_hk. */
MODEL (
  name vault.hub_order,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain order_hk,
  columns (
    order_hk text, order_id bigint, load_ts timestamptz, record_source text
  ),
  audits (
    not_null(columns := (order_hk, order_id, load_ts, record_source)),
    unique_keys(column := order_hk)
  )
);

select * from @hub(
  hash_key := order_hk,
  business_key := order_id,
  sources := silver.orders
) as hub;

@create_index(order_hk);
@create_index(load_ts);
@analyze_table();
