/* Personal data of customers (names, e-mail, phone, date of birth, address): a satellite of its
   own, so that access to it can differ from the rest of the vault. Insert-only: a row when a
   version differs from the one before it in source order (late versions kept, in order). Grain:
   customer_hk, load_ts. */
MODEL (
  name vault.sat_customer_personal,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (customer_hk, load_ts),
  columns (
    customer_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, batch_id bigint, first_name text, last_name text, email text,
    phone text, date_of_birth date, address_line1 text, city text, postcode text
  ),
  audits (
    not_null(columns := (customer_hk, load_ts, hashdiff, effective_from, batch_id)),
    unique_combination_of_columns(columns := (customer_hk, load_ts)),
    no_repeated_hashdiff(partition := (customer_hk))
  )
);

@without_nested_loops(); /* hash joins only: macros/maintenance.py */

select * from @sat(
  hash_key := customer_hk,
  business_key := customer_id,
  source := silver.customers,
  payload := (first_name, last_name, email, phone, date_of_birth, address_line1, city, postcode)
) as sat;

@create_index(customer_hk, load_ts);
@create_index(customer_hk, effective_from, batch_id);
@create_index(load_ts);
@analyze_table();
@with_nested_loops();
