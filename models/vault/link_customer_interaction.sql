/* Link between a CRM interaction and the customer it was with: one row per distinct pair, first
   load. Insert-only. Grain: customer_interaction_hk. */
MODEL (
  name vault.link_customer_interaction,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain customer_interaction_hk,
  depends_on (vault.hub_customer, vault.hub_interaction), -- its audits read these
  columns (
    customer_interaction_hk text, customer_hk text, interaction_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (customer_interaction_hk, customer_hk, interaction_hk, load_ts)),
    unique_keys(column := customer_interaction_hk),
    link_hub_keys_exist(hub := vault.hub_customer, hub_key := customer_hk),
    link_hub_keys_exist(hub := vault.hub_interaction, hub_key := interaction_hk)
  )
);

select * from @link(
  link_key := customer_interaction_hk,
  source := silver.interactions,
  customer_hk := customer_id,
  interaction_hk := interaction_id
) as link;

@create_index(customer_interaction_hk);
@create_index(customer_hk);
@create_index(interaction_hk);
@create_index(load_ts);
@analyze_table();
