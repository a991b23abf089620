/* Sales opportunities as received from the CRM feed: one row per opportunity version (the key
   includes updated_at, so one file may carry several versions of an opportunity), trimmed and
   typed; the feed's product_code is the bank's product id. A version without a product stays
   valid (the opportunity is real) and carries the warning `product_missing`: the vault loads the
   opportunity but not its link to a product. Insert-only.
   Grain: opportunity_id, updated_at, batch_id, load_ts. */
MODEL (
  name silver.opportunities,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (opportunity_id, updated_at, batch_id, load_ts),
  audits (
    not_null(columns := (opportunity_id, customer_id, updated_at, batch_id, load_ts)),
    unique_combination_of_columns(columns := (opportunity_id, updated_at, batch_id, load_ts))
  )
);

with versions as (
  select
    opportunity_id::bigint as opportunity_id,
    customer_id::bigint as customer_id,
    nullif(trim(product_code), '') as product_id,
    lower(trim(stage)) as stage,
    amount::numeric as amount,
    probability::numeric as probability,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    _source_file as source_file,
    _source_line as source_line,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.opportunities, @start_tstz, @end_tstz) as raw_rows
)
select
  opportunity_id, /* the CRM's opportunity number */
  customer_id, /* the customer it is with */
  product_id, /* the product offered (the feed's product_code) */
  stage, /* prospect, qualified, proposal, won or lost */
  amount, /* expected deal size, in pounds */
  probability, /* chance of winning, 0 to 1 */
  created_at, /* when the opportunity was opened */
  updated_at, /* when the CRM recorded this version: its source time */
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

@create_index(opportunity_id, load_ts);
@create_index(load_ts);
@analyze_table();
