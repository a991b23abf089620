/* Product orders as received from the operations feed: one row per order version (the key
   includes updated_at, so one file may carry several versions of an order), trimmed and typed.
   A version without a product stays valid (the order is real) and carries the warning
   `product_missing`: the vault loads the order but not its link to a product. Insert-only.
   Grain: order_id, updated_at, batch_id, load_ts. */
MODEL (
  name silver.orders,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (order_id, updated_at, batch_id, load_ts),
  audits (
    not_null(columns := (order_id, customer_id, updated_at, batch_id, load_ts)),
    unique_combination_of_columns(columns := (order_id, updated_at, batch_id, load_ts))
  )
);

with versions as (
  select
    order_id::bigint as order_id,
    customer_id::bigint as customer_id,
    nullif(trim(product_id), '') as product_id,
    lower(trim(channel)) as channel,
    lower(trim(status)) as status,
    amount::numeric as amount,
    ordered_at::timestamptz as ordered_at,
    updated_at::timestamptz as updated_at,
    _source_file as source_file,
    _source_line as source_line,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.orders, @start_tstz, @end_tstz) as raw_rows
)
select
  order_id, /* the order number */
  customer_id, /* the customer who placed it */
  product_id, /* the product ordered */
  channel, /* branch, phone, web or app */
  status, /* placed, approved, rejected, fulfilled or cancelled */
  amount, /* in pounds */
  ordered_at, /* when it was placed */
  updated_at, /* when the system recorded this version: its source time */
  source_file,
  source_line,
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  array_remove(array[case when product_id is null then 'product_missing' end], null)
    as dq_warnings, /* reported, not blocking: the row is valid, a link it carries is not loaded */
  @verdict() /* is_valid, dq_issues */
from (select *, '{}'::text[] as dq_issues from versions) as judged;

@create_index(order_id, load_ts);
@create_index(load_ts);
@analyze_table();
