/* The bank's products as received: one row per product version in a published raw batch (a
   delete marker is a version too), trimmed and typed. Insert-only, like every silver table of a
   source; `silver.current_products` is the catalogue as it stands. Grain: product_id, batch_id,
   load_ts. */
MODEL (
  name silver.products,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (product_id, batch_id, load_ts),
  audits (
    not_null(columns := (product_id, batch_id, load_ts)),
    unique_combination_of_columns(columns := (product_id, batch_id, load_ts))
  )
);

with versions as (
  select
    trim(product_id) as product_id,
    trim(name) as name,
    lower(trim(category)) as category,
    interest_rate::numeric(6, 4) as interest_rate,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.products, @start_tstz, @end_tstz) as raw_rows
)
select
  product_id, /* e.g. CUR-STD */
  name, /* product name */
  category, /* current, savings, credit_card or loan */
  interest_rate, /* annual rate, 0.0125 = 1.25 % */
  created_at,
  updated_at, /* when the source recorded this version */
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  @verdict() /* is_valid, dq_issues: the contract judged these rows; no rule of silver's yet */
from (select *, '{}'::text[] as dq_issues from versions) as judged
