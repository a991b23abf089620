/* Descriptive history of transactions (typically pending, then booked). Who the other party is
   lives in sat_transaction_counterparty: it names people (the other leg's account and transaction of
   an internal transfer are here: ids name no one). Insert-only: a row when a version
   differs from the one before it in source order (late versions kept, in order). Grain:
   transaction_hk, load_ts. */
MODEL (
  name vault.sat_transaction_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (transaction_hk, load_ts),
  columns (
    transaction_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, account_id bigint, reference text,
    transaction_type text, direction text, amount numeric(14, 2), currency char(3), status text,
    transaction_date date, booking_date date, booked_at timestamptz, channel text,
    merchant_category text, counterparty_account_id bigint, counterparty_transaction_id bigint
  ),
  audits (
    not_null(columns := (transaction_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (transaction_hk, load_ts)),
    no_repeated_hashdiff(partition := (transaction_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := transaction_hk,
  business_key := transaction_id,
  source := silver.transactions,
  payload := (
    account_id, reference, transaction_type, direction, amount, currency, status, transaction_date,
    booking_date, booked_at, channel, merchant_category, counterparty_account_id,
    counterparty_transaction_id
  )
) as sat;

@create_index(transaction_hk, load_ts);
@create_index(transaction_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
