/* Data quality per source entity per day: the day is the UTC date the warehouse published the
   batches (ops.batches.published_at), and every measure is a share from 0 to 1 of what those
   batches brought (null when there was nothing to measure):
     completeness = 1 - failed / evaluated over the contract's "missing" rules (a required column
                    empty) in ops.dq_results;
     validity     = rows that passed the contract / rows read (extraction batches; rows that broke
                    it went to quarantine.<entity>, counted by ops.batches.rows_quarantined);
     uniqueness   = 1 - failed / evaluated of the contract's key_duplicated rule (two rows of one
                    key in a batch);
     timeliness   = share of the day's rows in silver published within 24 hours
                    (`dq_timeliness_hours`) of their source time (updated_at; occurred_at for
                    interactions);
     audit_pass_rate = SQLMesh audits passed / audits run that day (ops.audit_results) on the
                    models named for the entity (silver.<entity>, and vault and gold models whose
                    name carries the entity, e.g. sat_customer_details for customers); bankdw
                    records a run's audits after SQLMesh ran them, so they count from the next
                    run of the day on.
   dq_score is the mean of the four data measures that are not null. The scorecard records
   operations (contract results, audits as they ran): a warehouse rebuilt from raw has the same
   data but not the same operations. Incremental by day (UTC): a run recomputes the day in
   progress from that day's batches, never older days. Grain: score_date, entity. */
MODEL (
  name gold.dq_scorecard,
  kind INCREMENTAL_BY_TIME_RANGE (time_column score_date),
  cron '@daily',
  grain (score_date, entity),
  audits (
    not_null(columns := (score_date, entity, batches, rows_read, rows_loaded, rows_quarantined)),
    unique_combination_of_columns(columns := (score_date, entity)),
    accepted_range(column := completeness, min_v := 0, max_v := 1),
    accepted_range(column := validity, min_v := 0, max_v := 1),
    accepted_range(column := uniqueness, min_v := 0, max_v := 1),
    accepted_range(column := timeliness, min_v := 0, max_v := 1),
    accepted_range(column := audit_pass_rate, min_v := 0, max_v := 1)
  )
);

with day_batches as (
  select
    b.batch_id,
    b.entity,
    b.kind,
    b.rows_in,
    b.rows_loaded,
    b.rows_quarantined,
    (b.published_at at time zone 'UTC')::date as score_date
  from ops.batches as b
  where b.published_at >= @start_ds::date::timestamp at time zone 'UTC'
    and b.published_at < (@end_ds::date + 1)::timestamp at time zone 'UTC'
    and b.status = 'committed'
),
batch_counts as (
  select
    score_date,
    entity,
    count(*) filter (where kind = 'extract') as batches,
    coalesce(sum(rows_in) filter (where kind = 'extract'), 0) as rows_read,
    coalesce(sum(rows_loaded) filter (where kind = 'extract'), 0) as rows_loaded,
    coalesce(sum(rows_quarantined) filter (where kind = 'extract'), 0) as rows_quarantined,
    coalesce(sum(rows_loaded) filter (where kind = 'replay'), 0) as rows_replayed
  from day_batches
  group by score_date, entity
),
rule_counts as (
  select
    b.score_date,
    b.entity,
    sum(r.evaluated) filter (where r.rule like '%\_missing') as completeness_evaluated,
    sum(r.failed) filter (where r.rule like '%\_missing') as completeness_failed,
    sum(r.evaluated) filter (where r.rule = 'key_duplicated') as uniqueness_evaluated,
    sum(r.failed) filter (where r.rule = 'key_duplicated') as uniqueness_failed
  from ops.dq_results as r
  join day_batches as b on b.batch_id = r.batch_id
  where b.kind = 'extract'
  group by b.score_date, b.entity
),
silver_rows as (
  /* each silver row of the day: its source time and when it was published */
  select 'customers' as entity, updated_at as source_time, load_ts from silver.customers
  where load_ts between @start_tstz and @end_tstz and not is_deleted
  union all
  select 'accounts', updated_at, load_ts from silver.accounts
  where load_ts between @start_tstz and @end_tstz and not is_deleted
  union all
  select 'account_holders', updated_at, load_ts from silver.account_holders
  where load_ts between @start_tstz and @end_tstz and not is_deleted and not is_release
  union all
  select 'transactions', updated_at, load_ts from silver.transactions
  where load_ts between @start_tstz and @end_tstz and not is_deleted
  union all
  select 'products', updated_at, load_ts from silver.products
  where load_ts between @start_tstz and @end_tstz and not is_deleted
  union all
  select 'interactions', occurred_at, load_ts from silver.interactions
  where load_ts between @start_tstz and @end_tstz
  union all
  select 'opportunities', updated_at, load_ts from silver.opportunities
  where load_ts between @start_tstz and @end_tstz
  union all
  select 'orders', updated_at, load_ts from silver.orders
  where load_ts between @start_tstz and @end_tstz
),
timely_rows as (
  select
    (load_ts at time zone 'UTC')::date as score_date,
    entity,
    count(*) as rows_published,
    count(*) filter (
      where load_ts - source_time <= make_interval(hours => @VAR('dq_timeliness_hours', 24))
    ) as rows_timely
  from silver_rows
  where source_time is not null
  group by 1, 2
),
audit_counts as (
  select
    b.score_date,
    b.entity,
    count(*) as audits_run,
    count(*) filter (where a.passed) as audits_passed
  from ops.audit_results as a
  join (select distinct score_date, entity from batch_counts) as b
    on b.score_date = (a.recorded_at at time zone 'UTC')::date
    and split_part(a.model, '.', 2) ~ (
      '(^|_)' || case when b.entity like '%ies' then left(b.entity, -3) || 'y' else rtrim(b.entity, 's') end
      || 's?(_|$)'
    )
  where a.recorded_at >= @start_ds::date::timestamp at time zone 'UTC'
    and a.recorded_at < (@end_ds::date + 1)::timestamp at time zone 'UTC'
  group by b.score_date, b.entity
),
measures as (
  select
    c.score_date,
    c.entity,
    c.batches,
    c.rows_read,
    c.rows_loaded,
    c.rows_quarantined,
    c.rows_replayed,
    round(1 - r.completeness_failed::numeric / nullif(r.completeness_evaluated, 0), 4) as completeness,
    round(c.rows_loaded::numeric / nullif(c.rows_read, 0), 4) as validity,
    round(1 - r.uniqueness_failed::numeric / nullif(r.uniqueness_evaluated, 0), 4) as uniqueness,
    round(t.rows_timely::numeric / nullif(t.rows_published, 0), 4) as timeliness,
    coalesce(t.rows_published, 0) as rows_published,
    coalesce(a.audits_run, 0) as audits_run,
    coalesce(a.audits_run - a.audits_passed, 0) as audits_failed,
    round(a.audits_passed::numeric / nullif(a.audits_run, 0), 4) as audit_pass_rate
  from batch_counts as c
  left join rule_counts as r on r.score_date = c.score_date and r.entity = c.entity
  left join timely_rows as t on t.score_date = c.score_date and t.entity = c.entity
  left join audit_counts as a on a.score_date = c.score_date and a.entity = c.entity
)
select
  score_date::date as score_date, /* the UTC date the batches were published */
  entity::text as entity, /* the source table or feed (customers, accounts, transactions, orders, ...) */
  batches::bigint as batches, /* extraction batches published that day */
  rows_read::numeric as rows_read, /* rows those batches read from the source */
  rows_loaded::numeric as rows_loaded, /* of which passed the contract and reached raw */
  rows_quarantined::numeric as rows_quarantined, /* of which broke it and went to quarantine.<entity> */
  rows_replayed::numeric as rows_replayed, /* rows released from quarantine that day by replay batches */
  completeness::numeric as completeness, /* 1 - failed / evaluated over the contract's required-column rules */
  validity::numeric as validity, /* rows_loaded / rows_read */
  uniqueness::numeric as uniqueness, /* 1 - failed / evaluated of the one-row-per-key rule */
  timeliness::numeric as timeliness, /* share of rows_published within dq_timeliness_hours (24) of their source time */
  rows_published::bigint as rows_published, /* rows the day published into silver (timeliness's denominator) */
  audits_run::bigint as audits_run, /* SQLMesh audits run that day on the entity's models */
  audits_failed::bigint as audits_failed, /* of which failed */
  audit_pass_rate::numeric as audit_pass_rate, /* audits passed / audits run */
  round((
    coalesce(completeness, 0) + coalesce(validity, 0) + coalesce(uniqueness, 0) + coalesce(timeliness, 0)
  ) / nullif(
    (completeness is not null)::int + (validity is not null)::int + (uniqueness is not null)::int
    + (timeliness is not null)::int, 0
  ), 4)::numeric as dq_score /* the mean of completeness, validity, uniqueness and timeliness, where measured */
from measures
