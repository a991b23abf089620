/* Link between an account and the product it is held under: one row per distinct pair (an
   account moved to another product gets a second one), first load. An account version without a
   product is not linked (silver warns: product_missing). Insert-only. Grain: account_product_hk. */
MODEL (
  name vault.link_account_product,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain account_product_hk,
  depends_on (vault.hub_account, vault.hub_product), -- its audits read these
  columns (
    account_product_hk text, account_hk text, product_hk text, load_ts timestamptz,
    record_source text
  ),
  audits (
    not_null(columns := (account_product_hk, account_hk, product_hk, load_ts)),
    unique_keys(column := account_product_hk),
    link_hub_keys_exist(hub := vault.hub_account, hub_key := account_hk),
    link_hub_keys_exist(hub := vault.hub_product, hub_key := product_hk)
  )
);

select * from @link(
  link_key := account_product_hk,
  source := silver.accounts,
  account_hk := account_id,
  product_hk := product_id
) as link;

@create_index(account_product_hk);
@create_index(account_hk);
@create_index(product_hk);
@create_index(load_ts);
@analyze_table();
