/* When each account's standing changed: 'held' when the bank first showed it without a valid
   version (every version broke a rule, or it only ever reached quarantine), 'valid' when its
   first valid version arrived. At most one event of each kind per account, and 'valid' is for
   good: holdings and transactions are judged against the standing as of their own load time,
   and those held back are released (silver emits them again) by the 'valid' event.
   Grain: account_id, standing. */
MODEL (
  name silver.account_standing,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (account_id, standing),
  columns (account_id bigint, standing text, load_ts timestamptz),
  audits (
    not_null(columns := (account_id, standing, load_ts)),
    unique_combination_of_columns(columns := (account_id, standing)),
    accepted_values(column := standing, is_in := ('held', 'valid'))
  )
);

with sightings as (
  /* every account version published in the interval, valid or not */
  select account_id, load_ts, is_valid and not is_deleted as valid
  from silver.accounts
  where load_ts between @start_tstz and @end_tstz
  union all
  /* accounts the contract kept out of raw: quarantined in a batch published in the interval */
  select (q.payload ->> 'account_id')::bigint, b.published_at, false
  from quarantine.accounts as q
  join ops.batches as b on b.batch_id = q.batch_id
  where b.published_at between @start_tstz and @end_tstz
    and q.payload ->> 'account_id' ~ '^[0-9]+$'
),
firsts_in_interval as (
  select
    account_id,
    min(load_ts) as first_seen,
    min(load_ts) filter (where valid) as first_valid
  from sightings
  group by account_id
),
standing_before as (
  select account_id, bool_or(standing = 'valid') as was_valid, bool_or(standing = 'held') as was_held
  from silver.account_standing
  where load_ts < @start_tstz and account_id in (select account_id from firsts_in_interval)
  group by account_id
)
select f.account_id, 'held' as standing, f.first_seen as load_ts
from firsts_in_interval as f
left join standing_before as b on b.account_id = f.account_id
where b.account_id is null and f.first_valid is distinct from f.first_seen
union all
select f.account_id, 'valid', f.first_valid
from firsts_in_interval as f
left join standing_before as b on b.account_id = f.account_id
where f.first_valid is not null and not coalesce(b.was_valid, false);

@create_index(account_id, load_ts);
