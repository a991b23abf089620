/* Orders by month and product: how many orders were placed in a month (bank's zone) for a
   product, and what became of them by their latest status. Rates are shares of the month's
   orders: fulfilment_rate = fulfilled / orders, cancellation_rate = cancelled / orders,
   rejection_rate = rejected / orders; the rest are still open (placed or approved). Orders whose
   feed row named no product are grouped under product 'unknown'. Incremental by key: a run
   recomputes only the months and products of the orders that changed in its interval (both the
   group an order is in now and any it was in before), from gold.fact_orders. Grain: order_month,
   product_key. */
MODEL (
  name gold.order_metrics,
  kind INCREMENTAL_BY_UNIQUE_KEY (unique_key (order_month, product_key)),
  cron '@hourly',
  grain (order_month, product_key),
  audits (
    not_null(columns := (order_month, product_key, orders, fulfilled_orders, cancelled_orders, rejected_orders, open_orders)),
    unique_combination_of_columns(columns := (order_month, product_key)),
    accepted_range(column := fulfilment_rate, min_v := 0, max_v := 1),
    accepted_range(column := cancellation_rate, min_v := 0, max_v := 1),
    accepted_range(column := rejection_rate, min_v := 0, max_v := 1),
    accepted_range(column := orders, min_v := 1)
  )
);

with changed_orders as (
  select order_hk from gold.fact_orders
  where loaded_at between @start_tstz and @end_tstz
),
touched_groups as (
  /* the group each changed order is in now, and any an earlier version put it in */
  select distinct f.order_month, f.product_key
  from gold.fact_orders as f
  join changed_orders as c on c.order_hk = f.order_hk
  union
  select distinct
    date_trunc('month', s.ordered_at at time zone @VAR('bank_timezone'))::date,
    coalesce(s.product_id, 'unknown')
  from vault.sat_order_details as s
  join changed_orders as c on c.order_hk = s.order_hk
  where s.ordered_at is not null
),
group_orders as (
  select f.*
  from gold.fact_orders as f
  join touched_groups as g on g.order_month = f.order_month and g.product_key = f.product_key
)
select
  order_month, /* first day of the month the orders were placed in (bank's zone) */
  product_key, /* the product ordered (gold.dim_product's product_id), or 'unknown' */
  count(*) as orders, /* orders placed in the month for the product */
  count(*) filter (where status = 'fulfilled') as fulfilled_orders, /* of which fulfilled */
  count(*) filter (where status = 'cancelled') as cancelled_orders, /* of which cancelled */
  count(*) filter (where status = 'rejected') as rejected_orders, /* of which rejected by the bank */
  count(*) filter (where is_open) as open_orders, /* of which still placed or approved */
  round(count(*) filter (where status = 'fulfilled')::numeric / count(*), 4) as fulfilment_rate, /* fulfilled / orders, 0 to 1 */
  round(count(*) filter (where status = 'cancelled')::numeric / count(*), 4) as cancellation_rate, /* cancelled / orders, 0 to 1 */
  round(count(*) filter (where status = 'rejected')::numeric / count(*), 4) as rejection_rate, /* rejected / orders, 0 to 1 */
  sum(amount) as ordered_amount, /* the orders' amounts, pounds */
  coalesce(sum(amount) filter (where status = 'fulfilled'), 0) as fulfilled_amount, /* of which fulfilled, pounds */
  max(loaded_at) as loaded_at /* the latest load among the group's orders */
from group_orders
group by order_month, product_key;

/* A group that lost its last order (an order's product or month changed) leaves the mart: the
   upsert above only writes groups that still have orders. */
@IF(
  @runtime_stage = 'evaluating',
  delete from @this_model as m
  where not exists (
    select 1 from gold.fact_orders as f
    where f.order_month = m.order_month and f.product_key = m.product_key
  )
  and (m.order_month, m.product_key) in (
    select
      date_trunc('month', s.ordered_at at time zone @VAR('bank_timezone'))::date,
      coalesce(s.product_id, 'unknown')
    from vault.sat_order_details as s
    where s.ordered_at is not null and s.order_hk in (
      select order_hk from vault.sat_order_details where load_ts between @start_tstz and @end_tstz
    )
  )
);
@create_unique_index(order_month, product_key);
@analyze_table();
