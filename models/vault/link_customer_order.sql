/* Link between a product order and the customer who placed it: one row per distinct pair, first
   load. Insert-only. Grain: customer_order_hk. */
MODEL (
  name vault.link_customer_order,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain customer_order_hk,
  depends_on (vault.hub_customer, vault.hub_order), -- its audits read these
  columns (
    customer_order_hk text, customer_hk text, order_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (customer_order_hk, customer_hk, order_hk, load_ts)),
    unique_keys(column := customer_order_hk),
    link_hub_keys_exist(hub := vault.hub_customer, hub_key := customer_hk),
    link_hub_keys_exist(hub := vault.hub_order, hub_key := order_hk)
  )
);

select * from @link(
  link_key := customer_order_hk,
  source := silver.orders,
  customer_hk := customer_id,
  order_hk := order_id
) as link;

@create_index(customer_order_hk);
@create_index(customer_hk);
@create_index(order_hk);
@create_index(load_ts);
@analyze_table();
