/* Hub of CRM interactions: one row per interaction id, first load and record source. Insert-
   only. Grain: interaction_hk. */
MODEL (
  name vault.hub_interaction,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain interaction_hk,
  columns (
    interaction_hk text, interaction_id bigint, load_ts timestamptz, record_source text
  ),
  audits (
    not_null(columns := (interaction_hk, interaction_id, load_ts, record_source)),
    unique_keys(column := interaction_hk)
  )
);

select * from @hub(
  hash_key := interaction_hk,
  business_key := interaction_id,
  sources := silver.interactions
) as hub;

@create_index(interaction_hk);
@create_index(load_ts);
@analyze_table();
