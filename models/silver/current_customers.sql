/* The latest version of each customer silver holds (a delete marker wins over a row of the same batch):
   "latest" computed where it is read, so silver rows never need rewriting. A view: it costs
   nothing until queried. Grain: customer_id. */
MODEL (
  name silver.current_customers,
  kind VIEW,
  grain (customer_id)
);

select distinct on (customer_id) *
from silver.customers
order by customer_id, load_ts desc, batch_id desc, is_deleted desc
