/* Link between a transaction and the account it was booked on: one row per distinct pair, first
   load that brought it. Insert-only. Grain: account_transaction_hk. */
MODEL (
  name vault.link_account_transaction,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain account_transaction_hk,
  depends_on (vault.hub_account, vault.hub_transaction), -- its audits read these
  columns (
    account_transaction_hk text, account_hk text, transaction_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (account_transaction_hk, account_hk, transaction_hk, load_ts)),
    unique_keys(column := account_transaction_hk),
    link_hub_keys_exist(hub := vault.hub_account, hub_key := account_hk),
    link_hub_keys_exist(hub := vault.hub_transaction, hub_key := transaction_hk)
  )
);

select * from @link(
  link_key := account_transaction_hk,
  source := silver.transactions,
  account_hk := account_id,
  transaction_hk := transaction_id
) as link;

@create_index(account_transaction_hk);
@create_index(account_hk);
@create_index(transaction_hk);
@create_index(load_ts);
@analyze_table();
