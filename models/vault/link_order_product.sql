/* Link between a product order and the product ordered: one row per distinct pair, first load. A
   version without a product is not linked (silver warns: product_missing). Insert-only. Grain:
   order_product_hk. */
MODEL (
  name vault.link_order_product,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain order_product_hk,
  depends_on (vault.hub_order, vault.hub_product), -- its audits read these
  columns (
    order_product_hk text, order_hk text, product_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (order_product_hk, order_hk, product_hk, load_ts)),
    unique_keys(column := order_product_hk),
    link_hub_keys_exist(hub := vault.hub_order, hub_key := order_hk),
    link_hub_keys_exist(hub := vault.hub_product, hub_key := product_hk)
  )
);

select * from @link(
  link_key := order_product_hk,
  source := silver.orders,
  order_hk := order_id,
  product_hk := product_id
) as link;

@create_index(order_product_hk);
@create_index(order_hk);
@create_index(product_hk);
@create_index(load_ts);
@analyze_table();
