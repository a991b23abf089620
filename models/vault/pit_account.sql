/* Point-in-time table of accounts: at every instant an account's satellite changes in source
   time, the load time of the row in effect then (see pit_customer for how late rows and readers
   work). Grain: account_hk, as_of, load_ts. */
MODEL (
  name vault.pit_account,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (account_hk, as_of, load_ts),
  columns (
    account_hk text, as_of timestamptz, load_ts timestamptz, sat_account_details_load_ts timestamptz
  ),
  audits (
    not_null(columns := (account_hk, as_of, load_ts)),
    unique_combination_of_columns(columns := (account_hk, as_of, load_ts)),
    pit_points_at_existing_rows(
      satellite := vault.sat_account_details, key := account_hk,
      pointer := sat_account_details_load_ts
    )
  )
);

select * from @pit(hash_key := account_hk, satellites := (vault.sat_account_details)) as pit;

@create_index(account_hk, as_of, load_ts);
@create_index(load_ts);
@analyze_table();
