/* Hub of transactions: one row per transaction id, with the load that first brought it and its
   record source. Insert-only. Grain: transaction_hk. */
MODEL (
  name vault.hub_transaction,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain transaction_hk,
  columns (
    transaction_hk text, transaction_id bigint, load_ts timestamptz, record_source text
  ),
  audits (
    not_null(columns := (transaction_hk, transaction_id, load_ts, record_source)),
    unique_keys(column := transaction_hk)
  )
);

select * from @hub(
  hash_key := transaction_hk,
  business_key := transaction_id,
  sources := silver.transactions
) as hub;

@create_index(transaction_hk);
@create_index(load_ts);
@analyze_table();
