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
  /* read once, before the first row is written: planned on the empty table of a first build, a
     lookup of it per written row rescans what the statement has written (quadratic) */
  select distinct on (transaction_hk) transaction_hk, is_deleted
  from vault.sat_transaction_deleted
  where load_ts < @start_tstz
    and transaction_hk in (select transaction_hk from presence_in_interval)
  order by transaction_hk, load_ts desc
),
sequenced as (
  select
    p.*,
    coalesce(
      lag(p.is_deleted) over (partition by p.transaction_hk order by p.load_ts, p.batch_id),
      b.is_deleted,
      false /* a key is present until the source deletes it */
    ) as was_deleted
  from presence_in_interval as p
  left join state_before_interval as b on b.transaction_hk = p.transaction_hk
)
select
  s.transaction_hk,
  s.load_ts + (row_number() over (partition by s.transaction_hk, s.load_ts order by s.batch_id) - 1)
    * interval '1 microsecond' as load_ts, /* changes published together keep their batch order */
  s.is_deleted,
  s.record_source
from sequenced as s
where s.is_deleted <> s.was_deleted
  /* only keys the vault knows: a deleted key that never had a valid version has no hub row */
  and exists (select 1 from vault.hub_transaction as h where h.transaction_hk = s.transaction_hk);

@create_index(transaction_hk, load_ts);
@create_index(load_ts);
@analyze_table();
