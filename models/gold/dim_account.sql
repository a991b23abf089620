/* Accounts with history (SCD type 2): one row per version of an account's details (product,
   identifiers, currency, status, dates), valid from when the source recorded it (the first
   version: from the start of its opening day in the bank's zone) until the next version. Built on
   the vault's point-in-time table, like gold.dim_customer. The details are per version; the
   product's name and category, the primary holder and the holder count are the account's current
   ones, the same on every version (holdings change apart from the details: a fact finds the
   primary holder at booking time itself). Current state only: `where is_current`. FULL: it grows
   with accounts' changes, not with transactions. Grain: account_hk, valid_from. */
MODEL (
  name gold.dim_account,
  kind FULL,
  grain (account_hk, valid_from),
  audits (
    not_null(columns := (account_version_key, account_hk, account_id, currency, status, valid_from, is_current)),
    unique_values(columns := (account_version_key)),
    unique_combination_of_columns(columns := (account_hk, valid_from)),
    accepted_values(column := status, is_in := ('open', 'dormant', 'closed'))
  )
);

with pictures as (
  /* each instant as the vault knows it now: a late satellite row re-issues the instants it
     changes, and the latest load of an instant wins */
  select distinct on (account_hk, as_of) *
  from vault.pit_account
  order by account_hk, as_of, load_ts desc
),
details_at_instants as (
  select
    p.account_hk,
    p.as_of,
    p.load_ts,
    d.hashdiff,
    d.product_id,
    d.sort_code,
    d.account_number,
    d.iban,
    d.currency,
    d.status,
    d.opened_on,
    d.closed_on
  from pictures as p
  join vault.sat_account_details as d
    on d.account_hk = p.account_hk and d.load_ts = p.sat_account_details_load_ts
),
changes as (
  /* an instant at which nothing a reader sees changed (a satellite row a late one made a repeat)
     is no new version */
  select *
  from (
    select *, lag(hashdiff) over (partition by account_hk order by as_of) as previous_hashdiff
    from details_at_instants
  ) as sequenced
  where hashdiff is distinct from previous_hashdiff
),
account_versions as (
  select
    h.account_id,
    c.*,
    lead(c.as_of) over (partition by c.account_hk order by c.as_of) as next_effective_from,
    row_number() over (partition by c.account_hk order by c.as_of) as version_number
  from changes as c
  join vault.hub_account as h on h.account_hk = c.account_hk
),
versions_with_validity as (
  select
    *,
    /* the first version holds from the opening day, so as-of joins find every transaction */
    case
      when version_number = 1
        then least((opened_on::timestamp at time zone @VAR('bank_timezone')), as_of)
      else as_of
    end as valid_from
  from account_versions
),
current_products as (
  select product_hk, product_id, name, category
  from gold.dim_product
  where is_current
),
primary_holders as (
  select distinct on (account_id) account_id, customer_id
  from silver.current_account_holders
  where is_valid and not is_deleted and holder_role = 'primary'
  order by account_id, valid_from desc
),
holder_counts as (
  select account_id, count(*) as holder_count
  from silver.current_account_holders
  where is_valid and not is_deleted and valid_to is null
  group by account_id
)
select
  md5(d.account_hk || '|' || extract(epoch from d.valid_from)::text)::text as account_version_key, /* surrogate key of this version (zone-independent) */
  d.account_hk, /* Data Vault hash key of the account (the same for all its versions) */
  d.account_id, /* core-banking account id */
  d.product_id, /* product the account is held under in this version */
  p.product_hk, /* the product's hash key (joins gold.dim_product) */
  p.name as product_name, /* the product's current name */
  p.category as product_category, /* current, savings, credit_card or loan */
  d.sort_code, /* UK sort code, NN-NN-NN */
  d.account_number, /* 8-digit account number */
  d.iban, /* GB IBAN */
  d.currency, /* ISO 4217 currency of the account */
  d.status, /* open, dormant or closed */
  d.opened_on, /* date the account was opened */
  d.closed_on, /* date the account was closed; null while not closed */
  ph.customer_id as primary_customer_id, /* the primary holder today (the same on every version) */
  coalesce(hc.holder_count, 0) as holder_count, /* current holders; more than one for a joint account */
  d.as_of as details_as_of, /* when the source recorded this version's details */
  d.valid_from::timestamptz as valid_from, /* start of this version; the first from the start of the opening day (bank's zone) */
  d.next_effective_from::timestamptz as valid_to, /* when the next version replaced it; null while current */
  d.next_effective_from is null as is_current, /* true for the account's current version */
  d.load_ts as loaded_at /* when the warehouse learned this version */
from versions_with_validity as d
left join current_products as p on p.product_id = d.product_id
left join primary_holders as ph on ph.account_id = d.account_id
left join holder_counts as hc on hc.account_id = d.account_id
