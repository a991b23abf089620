/* Hub of accounts: one row per account number, with the load that first brought it and its
   record source. Only the core bank's accounts table brings accounts: a holding or transaction
   of an account it never sent points at nothing, and the link audits stop the run. Insert-only.
   Grain: account_hk. */
MODEL (
  name vault.hub_account,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain account_hk,
  columns (
    account_hk text, account_id bigint, load_ts timestamptz, record_source text
  ),
  audits (
    not_null(columns := (account_hk, account_id, load_ts, record_source)),
    unique_keys(column := account_hk)
  )
);

select * from @hub(
  hash_key := account_hk,
  business_key := account_id,
  sources := silver.accounts
) as hub;

@create_index(account_hk);
@create_index(load_ts);
@analyze_table();
