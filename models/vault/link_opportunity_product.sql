/* Link between a sales opportunity and the product it offers: one row per distinct pair, first
   load. A version without a product is not linked (silver warns: product_missing). Insert-only.
   Grain: opportunity_product_hk. */
MODEL (
  name vault.link_opportunity_product,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain opportunity_product_hk,
  depends_on (vault.hub_opportunity, vault.hub_product), -- its audits read these
  columns (
    opportunity_product_hk text, opportunity_hk text, product_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (opportunity_product_hk, opportunity_hk, product_hk, load_ts)),
    unique_keys(column := opportunity_product_hk),
    link_hub_keys_exist(hub := vault.hub_opportunity, hub_key := opportunity_hk),
    link_hub_keys_exist(hub := vault.hub_product, hub_key := product_hk)
  )
);

select * from @link(
  link_key := opportunity_product_hk,
  source := silver.opportunities,
  opportunity_hk := opportunity_id,
  product_hk := product_id
) as link;

@create_index(opportunity_product_hk);
@create_index(opportunity_hk);
@create_index(product_hk);
@create_index(load_ts);
@analyze_table();
