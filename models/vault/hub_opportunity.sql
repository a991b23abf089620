/* Hub of sales opportunities: one row per opportunity id, first load and record source. Insert-
   only. Grain: opportunity_hk. */
MODEL (
  name vault.hub_opportunity,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain opportunity_hk,
  columns (
    opportunity_hk text, opportunity_id bigint, load_ts timestamptz, record_source text
  ),
  audits (
    not_null(columns := (opportunity_hk, opportunity_id, load_ts, record_source)),
    unique_keys(column := opportunity_hk)
  )
);

select * from @hub(
  hash_key := opportunity_hk,
  business_key := opportunity_id,
  sources := silver.opportunities
) as hub;

@create_index(opportunity_hk);
@create_index(load_ts);
@analyze_table();
