/* Point-in-time table of customers: at every instant a customer's satellites change in source
   time (not daily snapshots: a row per change costs what is new), the load time of the row in
   effect then in each satellite. A late satellite row re-issues the instants it changes, at its
   own load time: a reader takes, per instant, the row with the latest load_ts (or the latest up
   to a load time, to see the vault as it stood then). Grain: customer_hk, as_of, load_ts. */
MODEL (
  name vault.pit_customer,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  optimize_query false, -- the pattern's macro writes the query whole; sqlglot's optimiser only slows its render
  grain (customer_hk, as_of, load_ts),
  columns (
    customer_hk text, as_of timestamptz, load_ts timestamptz,
    sat_customer_details_load_ts timestamptz, sat_customer_personal_load_ts timestamptz
  ),
  audits (
    not_null(columns := (customer_hk, as_of, load_ts)),
    unique_combination_of_columns(columns := (customer_hk, as_of, load_ts)),
    pit_points_at_existing_rows(
      satellite := vault.sat_customer_details, key := customer_hk,
      pointer := sat_customer_details_load_ts
    ),
    pit_points_at_existing_rows(
      satellite := vault.sat_customer_personal, key := customer_hk,
      pointer := sat_customer_personal_load_ts
    )
  )
);

select * from @pit(
  hash_key := customer_hk,
  satellites := (vault.sat_customer_details, vault.sat_customer_personal)
) as pit;

@create_index(customer_hk, as_of, load_ts);
@create_index(load_ts);
@analyze_table();
