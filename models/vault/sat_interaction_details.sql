/* Descriptive history of CRM interactions (an interaction changes only when a file is re-sent
   with corrections); source time: when it occurred. Insert-only: a row when a version differs
   from the one before it in source order (late versions kept, in order). Grain: interaction_hk,
   load_ts. */
MODEL (
  name vault.sat_interaction_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (interaction_hk, load_ts),
  columns (
    interaction_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, channel text, interaction_type text,
    sentiment numeric
  ),
  audits (
    not_null(columns := (interaction_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (interaction_hk, load_ts)),
    no_repeated_hashdiff(partition := (interaction_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := interaction_hk,
  business_key := interaction_id,
  source := silver.interactions,
  payload := (channel, interaction_type, sentiment),
  effective_from := occurred_at
) as sat;

@create_index(interaction_hk, load_ts);
@create_index(interaction_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
