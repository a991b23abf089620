/* Link between customers and the accounts they hold (joint accounts give several customers per
   account): one row per distinct pair, first load that brought it. When the holding was in
   effect is the effectivity satellite's (eff_sat_customer_account). Insert-only. Grain:
   customer_account_hk. */
MODEL (
  name vault.link_customer_account,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain customer_account_hk,
  depends_on (vault.hub_customer, vault.hub_account), -- its audits read these
  columns (
    customer_account_hk text, customer_hk text, account_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (customer_account_hk, customer_hk, account_hk, load_ts)),
    unique_keys(column := customer_account_hk),
    link_hub_keys_exist(hub := vault.hub_customer, hub_key := customer_hk),
    link_hub_keys_exist(hub := vault.hub_account, hub_key := account_hk)
  )
);

select * from @link(
  link_key := customer_account_hk,
  source := silver.account_holders,
  customer_hk := customer_id,
  account_hk := account_id
) as link;

@create_index(customer_account_hk);
@create_index(customer_hk);
@create_index(account_hk);
@create_index(load_ts);
@analyze_table();
