/* Descriptive history of product orders: placed, then approved, rejected, fulfilled or
   cancelled. A file may carry several versions of one order: each is judged in source order.
   Insert-only: a row when a version differs from the one before it in source order (late
   versions kept, in order). Grain: order_hk, load_ts. */
MODEL (
  name vault.sat_order_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (order_hk, load_ts),
  columns (
    order_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, product_id text, channel text, status text,
    amount numeric, ordered_at timestamptz
  ),
  audits (
    not_null(columns := (order_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (order_hk, load_ts)),
    no_repeated_hashdiff(partition := (order_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := order_hk,
  business_key := order_id,
  source := silver.orders,
  payload := (product_id, channel, status, amount, ordered_at)
) as sat;

@create_index(order_hk, load_ts);
@create_index(order_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
