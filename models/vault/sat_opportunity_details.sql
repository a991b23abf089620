/* Descriptive history of sales opportunities: stage, amount, probability, as the CRM moves them
   on. A file may carry several versions of one opportunity: each is judged in source order.
   Insert-only: a row when a version differs from the one before it in source order (late
   versions kept, in order). Grain: opportunity_hk, load_ts. */
MODEL (
  name vault.sat_opportunity_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (opportunity_hk, load_ts),
  columns (
    opportunity_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, product_id text, stage text, amount numeric,
    probability numeric, created_at timestamptz
  ),
  audits (
    not_null(columns := (opportunity_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (opportunity_hk, load_ts)),
    no_repeated_hashdiff(partition := (opportunity_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := opportunity_hk,
  business_key := opportunity_id,
  source := silver.opportunities,
  payload := (product_id, stage, amount, probability, created_at)
) as sat;

@create_index(opportunity_hk, load_ts);
@create_index(opportunity_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
