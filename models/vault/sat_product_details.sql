/* Descriptive history of the bank's products: name, category, interest rate. Insert-only: a row
   when a version differs from the one before it in source order (late versions kept, in order).
   Grain: product_hk, load_ts. */
MODEL (
  name vault.sat_product_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (product_hk, load_ts),
  columns (
    product_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, name text, category text,
    interest_rate numeric(6, 4)
  ),
  audits (
    not_null(columns := (product_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (product_hk, load_ts)),
    no_repeated_hashdiff(partition := (product_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := product_hk,
  business_key := product_id,
  source := silver.products,
  payload := (name, category, interest_rate)
) as sat;

@create_index(product_hk, load_ts);
@create_index(product_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
