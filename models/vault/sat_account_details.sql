/* Descriptive history of accounts: product, identifiers, currency, status. Insert-only: a row
   when a version differs from the one before it in source order (late versions kept, in order).
   Grain: account_hk, load_ts. */
MODEL (
  name vault.sat_account_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (account_hk, load_ts),
  columns (
    account_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, product_id text, sort_code text,
    account_number text, iban text, currency char(3), status text, opened_on date,
    closed_on date
  ),
  audits (
    not_null(columns := (account_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (account_hk, load_ts)),
    no_repeated_hashdiff(partition := (account_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := account_hk,
  business_key := account_id,
  source := silver.accounts,
  payload := (product_id, sort_code, account_number, iban, currency, status, opened_on, closed_on)
) as sat;

@create_index(account_hk, load_ts);
@create_index(account_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
