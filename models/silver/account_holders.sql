/* Who holds which account, as received: one row per holding version in a published raw batch
   (joint accounts have several holders; a holding ends when valid_to is set), judged against the
   account's standing at its own load time. A holding held back because its account was not (yet)
   valid is emitted again, as a new row, when the account's first valid version arrives
   (`is_release`). Grain: account_id, customer_id, valid_from, batch_id, load_ts. */
MODEL (
  name silver.account_holders,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (account_id, customer_id, valid_from, batch_id, load_ts),
  columns ( /* declared: the model reads its own history, so its table must exist before a first run */
    account_id bigint, customer_id bigint, customer_hk text, account_hk text,
    customer_account_hk text, holder_role text, valid_from date, valid_to date,
    created_at timestamptz, updated_at timestamptz, batch_id bigint, load_ts timestamptz,
    record_source text, is_deleted boolean, is_release boolean, is_valid boolean, dq_issues text[]
  ),
  audits (
    not_null(columns := (account_id, customer_id, customer_account_hk, batch_id, load_ts)),
    unique_combination_of_columns(columns := (account_id, customer_id, valid_from, batch_id, load_ts))
  )
);

with versions as (
  select
    account_id::bigint as account_id,
    customer_id::bigint as customer_id,
    lower(trim(holder_role)) as holder_role,
    valid_from::date as valid_from,
    valid_to::date as valid_to,
    created_at::timestamptz as created_at,
    updated_at::timestamptz as updated_at,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.account_holders, @start_tstz, @end_tstz) as raw_rows
),
judged as (
  select
    v.account_id,
    v.customer_id,
    @hash_key(v.customer_id) as customer_hk,
    @hash_key(v.account_id) as account_hk,
    @hash_key(v.customer_id, v.account_id) as customer_account_hk,
    v.holder_role, v.valid_from, v.valid_to, v.created_at, v.updated_at, v.batch_id, v.load_ts,
    v.record_source, v.is_deleted,
    false as is_release,
    array_remove(array[
      case when not v.is_deleted and v.holder_role not in ('primary', 'joint') then 'holder_role_unknown' end,
      case when v.valid_to < v.valid_from then 'validity_reversed' end,
      case when (
          select s.standing from silver.account_standing as s
          where s.account_id = v.account_id and s.load_ts <= v.load_ts
          order by s.load_ts desc limit 1
        ) = 'held' then 'account_invalid' end
    ], null) as dq_issues
  from versions as v
),
released_accounts as (
  /* accounts whose first valid version arrived in this interval after being held */
  select s.account_id, s.load_ts as released_at
  from silver.account_standing as s
  where s.standing = 'valid' and s.load_ts between @start_tstz and @end_tstz
    and exists (
      select 1 from silver.account_standing as h
      where h.account_id = s.account_id and h.standing = 'held' and h.load_ts < s.load_ts
    )
),
latest_before_release as (
  select distinct on (c.account_id, c.customer_id, c.valid_from) c.*, r.released_at
  from (
    select
      account_id, customer_id, customer_hk, account_hk, customer_account_hk, holder_role,
      valid_from, valid_to, created_at, updated_at, batch_id, load_ts, record_source, is_deleted,
      is_release, dq_issues
    from silver.account_holders
    where load_ts < @start_tstz and account_id in (select account_id from released_accounts)
    union all
    select * from judged where account_id in (select account_id from released_accounts)
  ) as c
  join released_accounts as r on r.account_id = c.account_id
  where c.load_ts <= r.released_at
  order by c.account_id, c.customer_id, c.valid_from, c.load_ts desc, c.batch_id desc
),
releases as (
  select
    account_id, customer_id, customer_hk, account_hk, customer_account_hk, holder_role,
    valid_from, valid_to, created_at, updated_at, batch_id, released_at as load_ts, record_source,
    is_deleted, true as is_release, array_remove(dq_issues, 'account_invalid') as dq_issues
  from latest_before_release
  where 'account_invalid' = any(dq_issues)
),
verdicts as (
  select * from judged
  union all
  select * from releases
)
select
  account_id,
  customer_id,
  customer_hk,
  account_hk,
  customer_account_hk, /* the link's hash key */
  holder_role,
  valid_from,
  valid_to,
  created_at,
  updated_at,
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  is_release, /* true: a version held back for its account, released when the account became valid */
  @verdict() /* is_valid (false keeps the row out of the vault and gold), dq_issues */
from verdicts;

@create_index(account_id, load_ts);
@create_index(load_ts);
@analyze_table();
