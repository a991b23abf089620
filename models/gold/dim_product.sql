/* Products with history (SCD type 2): one row per version of a product's details (name, category,
   interest rate), from the vault's product satellite in source order. History, not just the
   current catalogue, because a rate change matters to the facts booked before it. The first
   version holds from the beginning of time ('-infinity'): an account opened before the catalogue
   first described its product still finds one. A product only named by an account, opportunity or
   order (no catalogue row yet) has one version with empty details. FULL: it grows with products.
   Grain: product_hk, valid_from. */
MODEL (
  name gold.dim_product,
  kind FULL,
  grain (product_hk, valid_from),
  audits (
    not_null(columns := (product_version_key, product_hk, product_id, valid_from, is_current)),
    unique_values(columns := (product_version_key)),
    unique_combination_of_columns(columns := (product_hk, valid_from)),
    accepted_values(
      column := category, is_in := ('current', 'savings', 'credit_card', 'loan'),
      condition := category is not null
    )
  )
);

with details_in_source_order as (
  select
    *,
    lag(hashdiff) over by_source_time as previous_hashdiff
  from vault.sat_product_details
  window by_source_time as (partition by product_hk order by effective_from, batch_id, load_ts)
),
changes as (
  /* a row that a late row before it made a repeat is no new version */
  select * from details_in_source_order
  where hashdiff is distinct from previous_hashdiff
),
product_versions as (
  select
    c.product_hk,
    c.effective_from,
    c.load_ts,
    c.name,
    c.category,
    c.interest_rate,
    row_number() over (partition by c.product_hk order by c.effective_from, c.batch_id, c.load_ts)
      as version_number,
    lead(c.effective_from) over (
      partition by c.product_hk order by c.effective_from, c.batch_id, c.load_ts
    ) as next_effective_from
  from changes as c
),
versions_with_validity as (
  select
    h.product_hk,
    h.product_id,
    v.name,
    v.category,
    v.interest_rate,
    case when v.version_number > 1 then v.effective_from else '-infinity'::timestamptz end
      as valid_from,
    v.next_effective_from as valid_to,
    coalesce(v.load_ts, h.load_ts) as loaded_at
  from vault.hub_product as h
  left join product_versions as v on v.product_hk = h.product_hk
),
deletion_state as (
  /* whether the source's catalogue still lists the product (the latest presence event) */
  select distinct on (product_hk) product_hk, is_deleted
  from vault.sat_product_deleted
  order by product_hk, load_ts desc
)
select
  md5(v.product_hk || '|' || extract(epoch from v.valid_from)::text)::text as product_version_key, /* surrogate key of this version */
  v.product_hk, /* Data Vault hash key of the product (the same for all its versions) */
  v.product_id, /* product code, e.g. CUR-STD */
  v.name, /* product name in this version; null while the catalogue has not described it */
  v.category, /* current, savings, credit_card or loan */
  v.interest_rate, /* annual rate in this version, 0.0125 = 1.25 % */
  v.valid_from, /* when the source recorded this version; the first holds from -infinity */
  v.valid_to::timestamptz as valid_to, /* when the next version replaced it; null while current */
  v.valid_to is null as is_current, /* true for the product's current version */
  not coalesce(d.is_deleted, false) as is_in_catalogue, /* false once the source deleted the product (the same on every version) */
  v.loaded_at /* when the warehouse learned this version */
from versions_with_validity as v
left join deletion_state as d on d.product_hk = v.product_hk
