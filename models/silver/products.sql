/* The bank's products, current state: one row per product (latest version published). FULL: a
   catalogue of tens of rows. Grain: product_id. */
MODEL (
  name silver.products,
  kind FULL,
  grain product_id,
  audits (not_null(columns := (product_id, name)), unique_values(columns := (product_id)))
);

with latest_versions as (
  select distinct on (product_id)
    trim(product_id) as product_id,
    trim(name) as name,
    lower(trim(category)) as category,
    interest_rate::numeric(6, 4) as interest_rate,
    updated_at::timestamptz as updated_at,
    _published_at as load_ts,
    _is_deleted as is_deleted
  from @published(raw.products, timestamptz '-infinity', timestamptz 'infinity') as raw_rows
  order by product_id, _published_at desc, _batch_id desc, _is_deleted desc
)
select product_id, name, category, interest_rate, updated_at, load_ts
from latest_versions
where not is_deleted
