/* Record tracking of source deletes for transactions: a row each time a transaction key's
   presence in the source changes (deleted: the source hard-deleted it; back: it reappeared).
   Insert-only; the key's history stays in the other satellites. Grain: transaction_hk, load_ts. */
MODEL (
  name vault.sat_transaction_deleted,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (transaction_hk, load_ts),
  depends_on (vault.hub_transaction),
  columns (transaction_hk text, load_ts timestamptz, is_deleted boolean, record_source text),
  audits (
    not_null(columns := (transaction_hk, load_ts, is_deleted)),
    unique_combination_of_columns(columns := (transaction_hk, load_ts))
  )
);

with presence_in_interval as (
  /* a delete marker says gone; a valid version says present */
  select transaction_hk, load_ts, batch_id, is_deleted, record_source
  from silver.transactions
  where load_ts between @start_tstz and @end_tstz and (is_deleted or is_valid)
),
state_before_interval as materialized (
  /* each key's state before the interval, as one lookup object built before the first row is
     written (why not a join: sat_transaction_details) */
  select coalesce(jsonb_object_agg(transaction_hk, is_deleted), '{}') as states
  from (
    select distinct on (transaction_hk) transaction_hk, is_deleted
    from vault.sat_transaction_deleted
    where load_ts < @start_tstz
      and transaction_hk in (select transaction_hk from presence_in_interval)
    order by transaction_hk, load_ts desc
  ) as latest
),
sequenced as (
  select
    p.*,
    lag(p.is_deleted) over (partition by p.transaction_hk order by p.load_ts, p.batch_id)
      as previous_in_interval
  from presence_in_interval as p
),
changes as (
  /* the lookup after the window, so that its sort never carries the lookup object (the function,
     not `->>`, which sqlglot renders as json_extract_path_text) */
  select s.*
  from sequenced as s
  cross join state_before_interval as b
  where s.is_deleted <> coalesce(
    s.previous_in_interval,
    jsonb_extract_path_text(b.states, s.transaction_hk)::boolean,
    false /* a key is present until the source deletes it */
  )
)
select
  c.transaction_hk,
  c.load_ts + (row_number() over (partition by c.transaction_hk, c.load_ts order by c.batch_id) - 1)
    * interval '1 microsecond' as load_ts, /* changes published together keep their batch order */
  c.is_deleted,
  c.record_source
from changes as c
/* only keys the vault knows: a deleted key that never had a valid version has no hub row */
where exists (select 1 from vault.hub_transaction as h where h.transaction_hk = c.transaction_hk);

@create_index(transaction_hk, load_ts);
@create_index(load_ts);
@analyze_table();
