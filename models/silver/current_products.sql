/* The latest version of each product silver holds (a delete marker wins over a row of the same
   batch): the catalogue as it stands, computed where it is read. Grain: product_id. */
MODEL (
  name silver.current_products,
  kind VIEW,
  grain (product_id)
);

select distinct on (product_id) *
from silver.products
order by product_id, load_ts desc, batch_id desc, is_deleted desc
