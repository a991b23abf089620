/* Link between a sales opportunity and its customer: one row per distinct pair, first load.
   Insert-only. Grain: customer_opportunity_hk. */
MODEL (
  name vault.link_customer_opportunity,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain customer_opportunity_hk,
  depends_on (vault.hub_customer, vault.hub_opportunity), -- its audits read these
  columns (
    customer_opportunity_hk text, customer_hk text, opportunity_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (customer_opportunity_hk, customer_hk, opportunity_hk, load_ts)),
    unique_keys(column := customer_opportunity_hk),
    link_hub_keys_exist(hub := vault.hub_customer, hub_key := customer_hk),
    link_hub_keys_exist(hub := vault.hub_opportunity, hub_key := opportunity_hk)
  )
);

select * from @link(
  link_key := customer_opportunity_hk,
  source := silver.opportunities,
  customer_hk := customer_id,
  opportunity_hk := opportunity_id
) as link;

@create_index(customer_opportunity_hk);
@create_index(customer_hk);
@create_index(opportunity_hk);
@create_index(load_ts);
@analyze_table();
