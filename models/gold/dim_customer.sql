/* Customers with history (SCD type 2): one row per version of a customer's details, valid from
   when the bank recorded it (the first version: from the customer's creation) until the next
   version. FULL: it grows with customers' changes, not with transactions.
   Grain: customer_hk, valid_from. */
MODEL (
  name gold.dim_customer,
  kind FULL,
  grain (customer_hk, valid_from),
  audits (
    not_null(columns := (customer_version_key, customer_hk, customer_id, valid_from, is_current)),
    unique_values(columns := (customer_version_key)),
    unique_combination_of_columns(columns := (customer_hk, valid_from))
  )
);

with customer_versions as (
  select
    h.customer_hk,
    h.customer_id,
    s.effective_from,
    s.created_at,
    s.load_ts,
    s.first_name,
    s.last_name,
    s.email,
    s.phone,
    s.date_of_birth,
    s.address_line1,
    s.city,
    s.postcode,
    s.country,
    lead(s.effective_from) over (partition by s.customer_hk order by s.effective_from, s.load_ts) as next_effective_from,
    row_number() over (partition by s.customer_hk order by s.effective_from, s.load_ts) as version_number
  from vault.sat_customer_details as s
  join vault.hub_customer as h on h.customer_hk = s.customer_hk
),
versions_with_validity as (
  select
    *,
    /* the first version holds from the customer's creation, so as-of joins find every
       transaction the customer ever made */
    case when version_number = 1 then least(created_at, effective_from) else effective_from end as valid_from
  from customer_versions
)
select
  md5(customer_hk || '|' || extract(epoch from valid_from)::text) as customer_version_key, /* surrogate key of this version (zone-independent) */
  customer_hk, /* Data Vault hash key of the customer */
  customer_id, /* core-banking customer number */
  first_name, /* given name */
  last_name, /* family name */
  email, /* e-mail address, lower-case */
  phone, /* telephone number as given */
  date_of_birth, /* date of birth */
  address_line1, /* first address line */
  city, /* town or city */
  postcode, /* UK postcode, upper-case */
  country, /* ISO 3166-1 alpha-2 country code */
  valid_from, /* when the source recorded this version; the first from the customer's creation */
  next_effective_from as valid_to, /* when the next version replaced it; null while current */
  next_effective_from is null as is_current, /* true for the customer's current version */
  load_ts as loaded_at /* when the warehouse received this version */
from versions_with_validity
