/* Accounts whose rows must not reach the vault: every version silver received broke a rule, or
   the account only ever arrived in quarantine. Their holdings and transactions wait with them.
   Grain: account_id. */
MODEL (
  name silver.accounts_held_back,
  kind FULL,
  grain account_id,
  audits (not_null(columns := (account_id)), unique_values(columns := (account_id)))
);

with flagged_in_silver as (
  select account_id
  from silver.accounts
  group by account_id
  having not bool_or(is_valid)
),
only_in_quarantine as (
  select distinct (q.payload ->> 'account_id')::bigint as account_id
  from quarantine.accounts as q
  where q.resolution is null
    and (q.payload ->> 'account_id')::bigint not in (select account_id from silver.accounts)
)
select account_id /* the core-banking account id */
from flagged_in_silver
union
select account_id
from only_in_quarantine
where account_id is not null
