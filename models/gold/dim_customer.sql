/* Customers with history (SCD type 2): one row per version of a customer's details, valid from
   when the bank recorded it (the first version: from the customer's creation) until the next
   version. Built on the vault's point-in-time table: each instant at which a customer's
   satellites changed, with the rows then in effect. FULL: it grows with customers' changes, not
   with transactions. Grain: customer_hk, valid_from.

   Personal data is masked (macros/masking.py): the e-mail's local part, the phone to its last 4
   digits, the date of birth to an age band, the postcode to its district; names and address
   lines are left out. Full personal data stays in vault.sat_customer_personal, which analysts
   cannot read. A version still starts wherever the vault's satellites changed, so two versions
   may show the same values (a change in a name or address line). The age band is on the date
   (bank zone) of the run that built the table: the table is rebuilt every run, so it is today's,
   and a second warehouse built at the same execution time gets the same bands. */
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

with pictures as (
  /* each instant as the vault knows it now: a late satellite row re-issues the instants it
     changes, and the latest load of an instant wins */
  select distinct on (customer_hk, as_of) *
  from vault.pit_customer
  order by customer_hk, as_of, load_ts desc
),
details_at_instants as (
  select
    p.customer_hk,
    p.as_of,
    p.load_ts,
    d.hashdiff as details_hashdiff,
    s.hashdiff as personal_hashdiff,
    d.created_at,
    d.country,
    s.first_name,
    s.last_name,
    s.email,
    s.phone,
    s.date_of_birth,
    s.address_line1,
    s.city,
    s.postcode
  from pictures as p
  left join vault.sat_customer_details as d
    on d.customer_hk = p.customer_hk and d.load_ts = p.sat_customer_details_load_ts
  left join vault.sat_customer_personal as s
    on s.customer_hk = p.customer_hk and s.load_ts = p.sat_customer_personal_load_ts
),
changes as (
  /* an instant at which nothing a reader sees changed (a satellite row a late one made a repeat)
     is no new version */
  select *
  from (
    select
      *,
      lag(details_hashdiff) over by_instant as previous_details,
      lag(personal_hashdiff) over by_instant as previous_personal
    from details_at_instants
    window by_instant as (partition by customer_hk order by as_of)
  ) as sequenced
  where (details_hashdiff, personal_hashdiff) is distinct from (previous_details, previous_personal)
),
customer_versions as (
  select
    h.customer_id,
    c.*,
    lead(c.as_of) over (partition by c.customer_hk order by c.as_of) as next_effective_from,
    row_number() over (partition by c.customer_hk order by c.as_of) as version_number
  from changes as c
  join vault.hub_customer as h on h.customer_hk = c.customer_hk
),
versions_with_validity as (
  select
    *,
    /* the first version holds from the customer's creation, so as-of joins find every
       transaction the customer ever made */
    case when version_number = 1 then least(created_at, as_of) else as_of end as valid_from
  from customer_versions
)
select
  md5(customer_hk || '|' || extract(epoch from valid_from)::text) as customer_version_key, /* surrogate key of this version (zone-independent) */
  customer_hk, /* Data Vault hash key of the customer */
  customer_id, /* core-banking customer number */
  @mask_email(email) as email_masked, /* e-mail with its local part masked: first character, ***, @domain */
  @phone_last4(phone) as phone_last4, /* last 4 digits of the telephone number; null when none or too short */
  @age_band(date_of_birth, (@execution_tstz::timestamptz at time zone @VAR('bank_timezone'))::date) as age_band, /* <18, 18-24, 25-34, 35-44, 45-54, 55-64 or 65+ on the date of the run that built this table */
  city, /* town or city */
  @postcode_district(postcode) as postcode_district, /* outward code of the UK postcode (LS1 of LS1 4AP) */
  country, /* ISO 3166-1 alpha-2 country code */
  valid_from, /* when the source recorded this version; the first from the customer's creation */
  next_effective_from::timestamptz as valid_to, /* when the next version replaced it; null while current */
  next_effective_from is null as is_current, /* true for the customer's current version */
  load_ts as loaded_at /* when the warehouse learned this version */
from versions_with_validity
