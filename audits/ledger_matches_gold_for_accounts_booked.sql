/* Gold's balance of an account equals the source's ledger as loaded, to the penny, except by
   exactly the booked transactions the warehouse holds back, counted, not lost. For each account
   whose ledger or facts arrived in the interval:
   - ledger: its latest silver.account_balances version (balance, booked_transactions, updated_at);
   - gold: the account's latest daily closing balance (and booked count), less the facts booked
     after the ledger's updated_at (the source may book between the reads of the ledger and of
     the transactions); an account gold does not hold (its account row held back) counts its
     ledger's opening balance and no bookings;
   - held back: the account's transactions whose latest silver version is booked (at or before
     the ledger's updated_at) and invalid (duplicate, amount_not_positive, currency_unknown,
     account_invalid, ...), and those whose booked version sits in quarantine and never reached
     silver; signed as the ledger books them (credits add, anything else subtracts).
   Returns the accounts where ledger - gold differs from the held-back sum, or the ledger's count
   of bookings from gold's count plus the held-back count. Pending transactions are in neither
   side; a cancelled (deleted) one never was booked. An account with a transaction a data steward
   fixed and replayed from quarantine is left out: gold holds the corrected values by design.
   Cost: index lookups per account the interval touched, and that account's silver versions;
   the quarantine table is scanned (bad rows only). */
AUDIT (
  name ledger_matches_gold_for_accounts_booked
);

with touched as (
  select distinct account_id from silver.account_balances
  where load_ts between @start_tstz and @end_tstz
  union
  select distinct f.account_id from gold.fact_transactions as f
  where f.loaded_at between @start_tstz and @end_tstz
),
ledger as (
  select distinct on (b.account_id)
    b.account_id, b.account_hk, b.opening_balance, b.balance, b.booked_transactions, b.updated_at,
    b.is_deleted
  from silver.account_balances as b
  where b.account_id = any(array(select account_id from touched)) and b.load_ts <= @end_tstz
  order by b.account_id, b.load_ts desc, b.batch_id desc, b.is_deleted desc
),
gold_balance as (
  select
    l.account_id,
    coalesce(last_day.closing_balance, l.opening_balance) - coalesce(after_ledger.signed_sum, 0) as balance,
    coalesce(last_day.booked_transactions_to_date, 0) - coalesce(after_ledger.bookings, 0) as bookings
  from ledger as l
  left join lateral (
    select t.closing_balance, t.booked_transactions_to_date
    from @whole_table(@this_model) as t
    where t.account_hk = l.account_hk
    order by t.balance_date desc limit 1
  ) as last_day on true
  left join lateral (
    select sum(f.signed_amount) as signed_sum, count(*) as bookings
    from gold.fact_transactions as f
    where f.account_hk = l.account_hk and f.booked_at > l.updated_at
  ) as after_ledger on true
  where not l.is_deleted
),
latest_silver as (
  select distinct on (s.transaction_id) s.transaction_id, s.account_id, s.status, s.direction,
    s.amount, s.booked_at, s.is_valid, s.is_deleted
  from silver.transactions as s
  where s.account_id = any(array(select account_id from touched)) and s.load_ts <= @end_tstz
  order by s.transaction_id, s.load_ts desc, s.batch_id desc, s.is_deleted desc
),
quarantined as (
  select distinct on ((q.payload ->> 'transaction_id')::bigint)
    (q.payload ->> 'transaction_id')::bigint as transaction_id,
    (q.payload ->> 'account_id')::bigint as account_id,
    lower(q.payload ->> 'status') as status,
    lower(q.payload ->> 'direction') as direction,
    (q.payload ->> 'amount')::numeric as amount,
    (q.payload ->> 'booked_at')::timestamptz as booked_at
  from quarantine.transactions as q
  where q.payload ->> 'transaction_id' ~ '^[0-9]+$' and q.payload ->> 'account_id' ~ '^[0-9]+$'
    and q.payload ->> 'amount' ~ '^-?[0-9]+(\.[0-9]+)?$'
    and q.resolution is null
    and (q.payload ->> 'account_id')::bigint = any(array(select account_id from touched))
  order by (q.payload ->> 'transaction_id')::bigint, q.batch_id desc
),
held_back_rows as (
  select account_id, status, direction, amount, booked_at from latest_silver
  where not is_valid and not is_deleted
  union all
  select q.account_id, q.status, q.direction, q.amount, q.booked_at from quarantined as q
  where not exists (select 1 from latest_silver as s where s.transaction_id = q.transaction_id)
),
held_back as (
  select
    h.account_id,
    sum(case when h.direction = 'credit' then h.amount else -h.amount end) as signed_sum,
    count(*) as bookings
  from held_back_rows as h
  join ledger as l on l.account_id = h.account_id
  where h.status = 'booked' and h.booked_at <= l.updated_at
  group by h.account_id
)
select
  l.account_id, l.balance as ledger_balance, g.balance as gold_balance,
  coalesce(h.signed_sum, 0) as held_back_sum, l.booked_transactions as ledger_bookings,
  g.bookings as gold_bookings, coalesce(h.bookings, 0) as held_back_bookings
from ledger as l
join gold_balance as g on g.account_id = l.account_id
left join held_back as h on h.account_id = l.account_id
where (l.balance - g.balance <> coalesce(h.signed_sum, 0)
    or l.booked_transactions - g.bookings <> coalesce(h.bookings, 0))
  /* a data steward's correction (a quarantined row fixed and replayed) makes gold differ from the
     source's ledger on purpose: such accounts are not held to the ledger (README, "Balances
     reconciled to the source's ledger") */
  and not exists (
    /* by the replay's batch (ops.batches stays; resolved quarantine rows are cleaned up) */
    select 1 from silver.transactions as s
    join ops.batches as b on b.batch_id = s.batch_id and b.kind = 'replay'
    where s.account_id = l.account_id
  )
