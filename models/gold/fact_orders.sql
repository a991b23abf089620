/* Product orders: one row per order, as its latest version in source order says (an order moves
   placed -> approved -> fulfilled, or is rejected or cancelled), with the month it was placed in
   (bank's zone). gold.order_metrics aggregates it. Incremental by key: each run upserts the orders
   whose vault rows changed in its interval. Grain: order_hk. */
MODEL (
  name gold.fact_orders,
  kind INCREMENTAL_BY_UNIQUE_KEY (unique_key order_hk),
  cron '@hourly',
  grain order_hk,
  audits (
    not_null(
      columns := (order_hk, order_id, status, ordered_at, order_month, product_key),
      condition := loaded_at >= @start_tstz
    ),
    unique_values(columns := (order_hk), condition := loaded_at >= @start_tstz),
    accepted_values(
      column := status, is_in := ('placed', 'approved', 'rejected', 'fulfilled', 'cancelled'),
      condition := loaded_at >= @start_tstz
    )
  )
);

with changed_orders as (
  select order_hk from @keys_loaded(order_hk, vault.sat_order_details, vault.link_customer_order)
    as loaded
),
latest_versions as (
  /* the latest version in source order, as the vault held it at the interval's end */
  select distinct on (s.order_hk) s.*
  from vault.sat_order_details as s
  join changed_orders as c on c.order_hk = s.order_hk
  where s.load_ts <= @end_tstz
  order by s.order_hk, s.effective_from desc, s.batch_id desc
),
first_versions as (
  /* when the order was placed: its first version's time (a later version may not repeat it) */
  select distinct on (s.order_hk) s.order_hk, s.ordered_at
  from vault.sat_order_details as s
  join changed_orders as c on c.order_hk = s.order_hk
  where s.load_ts <= @end_tstz and s.ordered_at is not null
  order by s.order_hk, s.effective_from, s.batch_id
),
customers as (
  select l.order_hk, l.customer_hk, hc.customer_id, l.load_ts
  from vault.link_customer_order as l
  join changed_orders as c on c.order_hk = l.order_hk
  join vault.hub_customer as hc on hc.customer_hk = l.customer_hk
  where l.load_ts <= @end_tstz
),
placed as (
  select
    v.*,
    coalesce(v.ordered_at, f.ordered_at, v.effective_from) as placed_at
  from latest_versions as v
  left join first_versions as f on f.order_hk = v.order_hk
)
select
  h.order_hk, /* Data Vault hash key of the order */
  h.order_id, /* the operations feed's order number */
  cu.customer_id, /* the customer who placed it */
  cu.customer_hk, /* the customer's hash key (joins gold.dim_customer) */
  p.product_id, /* the product ordered; null when the feed did not say */
  coalesce(p.product_id, 'unknown') as product_key, /* the product, or 'unknown': how gold.order_metrics groups */
  p.channel, /* branch, phone, web or app */
  p.status, /* placed, approved, rejected, fulfilled or cancelled: the latest version's */
  p.status in ('placed', 'approved') as is_open, /* still on its way */
  p.amount, /* in pounds */
  p.placed_at as ordered_at, /* when it was placed */
  date_trunc('month', p.placed_at at time zone @VAR('bank_timezone'))::date as order_month, /* first day of the month it was placed in (bank's zone) */
  p.effective_from as status_at, /* when the source recorded the latest status */
  greatest(p.load_ts, cu.load_ts) as loaded_at /* when the warehouse received what this row says */
from placed as p
join vault.hub_order as h on h.order_hk = p.order_hk
left join customers as cu on cu.order_hk = p.order_hk;

@create_unique_index(order_hk);
@create_index(order_month, product_key);
@create_index(loaded_at);
@analyze_table();
