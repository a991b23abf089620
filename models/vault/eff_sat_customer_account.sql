/* Effectivity satellite of the customer-account link: when each holding was in effect. A
   relationship's periods are keyed by their start date: a row when a period opens (end_date
   NULL), closes (the holder left: end_date set) or reopens (end_date NULL again). A holder who
   leaves and returns gets a new period; one relationship has one open period at a time
   (audited). A holding deleted in the source closes on the day the warehouse learned of it.
   Late versions are kept, in source order. Grain: customer_account_hk, load_ts. */
MODEL (
  name vault.eff_sat_customer_account,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (customer_account_hk, load_ts),
  columns (
    customer_account_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, start_date date, end_date date
  ),
  audits (
    not_null(columns := (customer_account_hk, load_ts, hashdiff, effective_from, start_date)),
    unique_combination_of_columns(columns := (customer_account_hk, load_ts)),
    no_repeated_hashdiff(partition := (customer_account_hk, start_date)),
    effectivity_periods_do_not_overlap(key := customer_account_hk)
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @eff_sat(
  hash_key := customer_account_hk,
  business_key := (customer_id, account_id),
  source := silver.account_holders,
  start_date := valid_from,
  end_date := valid_to
) as effectivity;

@create_index(customer_account_hk, load_ts);
@create_index(customer_account_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
