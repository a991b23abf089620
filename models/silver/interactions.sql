/* CRM interactions as received from the feed files: one row per interaction version in a
   published raw batch (a file re-sent with new content brings a new version), trimmed and typed.
   The contract has already refused lines without an interaction, a customer or a time. An
   interaction may name a customer the core bank has not sent yet: the vault's customer hub takes
   it from here. Insert-only. Grain: interaction_id, batch_id, load_ts. */
MODEL (
  name silver.interactions,
  kind INCREMENTAL_BY_TIME_RANGE (time_column load_ts),
  cron '@hourly',
  grain (interaction_id, batch_id, load_ts),
  audits (
    not_null(columns := (interaction_id, customer_id, occurred_at, batch_id, load_ts)),
    unique_combination_of_columns(columns := (interaction_id, batch_id, load_ts))
  )
);

with versions as (
  select
    interaction_id::bigint as interaction_id,
    customer_id::bigint as customer_id,
    lower(trim(channel)) as channel,
    lower(trim(interaction_type)) as interaction_type,
    sentiment::numeric as sentiment,
    occurred_at::timestamptz as occurred_at,
    _source_file as source_file,
    _source_line as source_line,
    @load_metadata() /* batch_id, load_ts, record_source, is_deleted */
  from @published(raw.interactions, @start_tstz, @end_tstz) as raw_rows
)
select
  interaction_id, /* the CRM's interaction number */
  customer_id, /* the customer it was with (core-banking customer number) */
  channel, /* branch, phone, web, app or email */
  interaction_type, /* complaint, enquiry, service or sales */
  sentiment, /* from -1 (negative) to 1 (positive) */
  occurred_at, /* when it happened: the version's source time */
  source_file, /* the feed file it came from */
  source_line, /* the line of that file */
  batch_id,
  load_ts,
  record_source,
  is_deleted,
  @verdict() /* is_valid, dq_issues: the contract judged these rows; no rule of silver's yet */
from (select *, '{}'::text[] as dq_issues from versions) as judged;

@create_index(interaction_id, load_ts);
@create_index(load_ts);
@analyze_table();
