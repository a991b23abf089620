/* Gold's booked transactions per day and currency equal what the source booked, as the warehouse
   received it, less what it holds back: for each (booking_date, currency) that a fact loaded in
   the interval falls on, gold's count and sum equal those of the transactions whose latest silver
   version (silver holds every version raw published: the source as received) is booked, not
   deleted in the source, and passed silver's rules. What silver holds back (invalid versions) and
   what quarantine holds (rows that never reached raw) is the difference from the source's own
   books: counted by gold.dq_scorecard and per account by ledger_matches_gold_for_accounts_booked,
   never lost. Returns the days and currencies that differ. Cost: the interval's days only, each
   read through silver's (booking_date) and (transaction_id, load_ts) indexes. */
AUDIT (
  name daily_totals_match_silver
);

with days as (
  select distinct f.booking_date, f.currency
  from @whole_table(@this_model) as f
  where f.loaded_at between @start_tstz and @end_tstz
),
gold_totals as (
  select f.booking_date, f.currency, count(*) as bookings, sum(f.amount) as amount
  from @whole_table(@this_model) as f
  join days as d on d.booking_date = f.booking_date and d.currency = f.currency
  group by f.booking_date, f.currency
),
candidates as (
  /* any version dated on one of those days: its latest version decides where it counts */
  select distinct s.transaction_id
  from silver.transactions as s
  where s.booking_date = any(array(select booking_date from days)) and s.load_ts <= @end_tstz
),
latest_versions as (
  select distinct on (s.transaction_id) s.booking_date, s.currency, s.amount, s.status,
    s.is_valid, s.is_deleted
  from silver.transactions as s
  where s.transaction_id = any(array(select transaction_id from candidates))
    and s.load_ts <= @end_tstz
  order by s.transaction_id, s.load_ts desc, s.batch_id desc, s.is_deleted desc
),
silver_totals as (
  select v.booking_date, v.currency, count(*) as bookings, sum(v.amount) as amount
  from latest_versions as v
  join days as d on d.booking_date = v.booking_date and d.currency = v.currency
  where v.status = 'booked' and v.is_valid and not v.is_deleted
  group by v.booking_date, v.currency
)
select d.booking_date, d.currency, g.bookings as gold_bookings, s.bookings as silver_bookings,
  g.amount as gold_amount, s.amount as silver_amount
from days as d
left join gold_totals as g on g.booking_date = d.booking_date and g.currency = d.currency
left join silver_totals as s on s.booking_date = d.booking_date and s.currency = d.currency
where (g.bookings, g.amount) is distinct from (s.bookings, s.amount)
