/* The source's ledger per account: its currency, opening balance, running balance and count of
   bookings, one row per version that differs from the one before it in source order (effective
   from the ledger's updated_at, the instant of the latest booking it holds). Insert-only; late
   versions kept, in order (docs/data-vault.md). Gold's daily balances start from its opening
   balance. Grain: account_hk, load_ts. */
MODEL (
  name vault.sat_account_ledger,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (account_hk, load_ts),
  columns (
    account_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, currency char(3), opening_balance numeric(14, 2),
    balance numeric(14, 2), booked_transactions bigint, created_at timestamptz
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
  source := silver.account_balances,
  payload := (currency, opening_balance, balance, booked_transactions, created_at)
) as sat;

@create_index(account_hk, load_ts);
@create_index(account_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
