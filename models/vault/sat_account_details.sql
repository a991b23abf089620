/* Descriptive history of accounts (product, identifiers, status): a row each time they change.
   Insert-only. Grain: account_hk, load_ts. */
MODEL (
  name vault.sat_account_details,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (account_hk, load_ts),
  columns (
    account_hk text, load_ts timestamptz, hashdiff text, record_source text,
    effective_from timestamptz, product_id text, sort_code text, account_number text, iban text,
    currency char(3), status text, opened_on date, closed_on date
  ),
  audits (
    not_null(columns := (account_hk, load_ts, hashdiff)),
    unique_combination_of_columns(columns := (account_hk, load_ts))
  )
);

with versions_in_interval as (
  select *
  from silver.accounts
  where is_valid and not is_deleted and load_ts between @start_tstz and @end_tstz
),
latest_before_interval as materialized (
  /* each key's hashdiff before the interval, as one lookup object built before the first row is
     written: a join would be planned as a nested loop on the model's own table while it fills
     (a first build: quadratic) or, on stale statistics, over this CTE once per version */
  select coalesce(jsonb_object_agg(account_hk, hashdiff), '{}') as hashdiffs
  from (
    select distinct on (account_hk) account_hk, hashdiff
    from vault.sat_account_details
    where load_ts < @start_tstz and account_hk in (select account_hk from versions_in_interval)
    order by account_hk, load_ts desc
  ) as latest
),
sequenced as (
  select
    v.*,
    lag(v.hashdiff) over (partition by v.account_hk order by v.load_ts, v.batch_id) as previous_in_interval
  from versions_in_interval as v
)
select
  account_hk,
  /* versions of one key published together (two batches) keep their batch order, a microsecond
     apart: the grain stays (key, load time) */
  load_ts + (row_number() over (partition by account_hk, load_ts order by batch_id) - 1)
    * interval '1 microsecond' as load_ts,
  hashdiff,
  record_source,
  updated_at as effective_from,
  product_id,
  sort_code,
  account_number,
  iban,
  currency,
  status,
  opened_on,
  closed_on
from (
  /* the lookup after the window, so that its sort never carries the lookup object (the function,
     not `->>`, which sqlglot renders as json_extract_path_text) */
  select s.* from sequenced as s cross join latest_before_interval as l
  where coalesce(s.previous_in_interval, jsonb_extract_path_text(l.hashdiffs, s.account_hk)) is distinct from s.hashdiff
) as changes;

@create_index(account_hk, load_ts);
@create_index(load_ts);
@analyze_table();
