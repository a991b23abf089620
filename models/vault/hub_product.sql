/* Hub of products: one row per product id, with the load that first brought it and its record
   source: the core bank's catalogue, or an account, opportunity or order that names a product
   first. Insert-only. Grain: product_hk. */
MODEL (
  name vault.hub_product,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain product_hk,
  columns (
    product_hk text, product_id text, load_ts timestamptz, record_source text
  ),
  audits (
    not_null(columns := (product_hk, product_id, load_ts, record_source)),
    unique_keys(column := product_hk)
  )
);

select * from @hub(
  hash_key := product_hk,
  business_key := product_id,
  sources := (
    silver.products,
    silver.accounts,
    silver.opportunities,
    silver.orders
  )
) as hub;

@create_index(product_hk);
@create_index(load_ts);
@analyze_table();
