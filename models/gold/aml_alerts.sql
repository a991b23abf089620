/* AML alerts: one row per alert, an episode of one rule on one account. Grain: alert_id.

   The rules look at booked transactions (gold.fact_transactions) in AML_CURRENCY (GBP; other
   currencies are not monitored: the warehouse holds no exchange rates), windows measured on
   booked_at, each threshold a setting (flows/settings.py, exported as a SQLMesh variable):
   - structuring: AML_STRUCTURING_MIN_DEPOSITS (3) or more cash deposits (type deposit,
     description CASH DEPOSIT) of AML_STRUCTURING_MIN_AMOUNT to AML_STRUCTURING_MAX_AMOUNT
     (9,000 to 9,999.99) within AML_STRUCTURING_WINDOW_DAYS (7);
   - velocity, variant count: more than AML_VELOCITY_MAX_DEBITS (10) debits within
     AML_VELOCITY_COUNT_WINDOW_MINUTES (60); variant amount: more than AML_VELOCITY_MAX_AMOUNT
     (50,000) of debits within AML_VELOCITY_AMOUNT_WINDOW_HOURS (24);
   - pass_through: a credit of at least AML_PASS_THROUGH_MIN_CREDIT (5,000), then debits of at
     least AML_PASS_THROUGH_SHARE (0.9) of it within AML_PASS_THROUGH_WINDOW_HOURS (48) after it;
   - new_account_high_value: a single credit of at least AML_NEW_ACCOUNT_MIN_CREDIT (10,000)
     booked within AML_NEW_ACCOUNT_DAYS (30) of the account's opened_on (bank calendar days);
   - network, over internal transfers (counterparty_account_id set), AMLSim's typologies:
     variant fan_in: AML_FAN_MIN_ACCOUNTS (5) or more distinct accounts of the bank transfer to
     the account within AML_FAN_WINDOW_HOURS (72), then debits of at least AML_FAN_SHARE (0.8,
     "most of it") of what came in leave it within AML_FAN_WINDOW_HOURS after the last transfer
     in; variant fan_out, the mirror: a credit of at least AML_FAN_OUT_MIN_CREDIT (5,000), then
     transfers out to AML_FAN_MIN_ACCOUNTS or more distinct accounts within AML_FAN_WINDOW_HOURS
     after it, totalling at least AML_FAN_SHARE of the credit.

   A qualifying window starts at a transaction (its anchor) and takes the transactions after it,
   in booking order, up to the one that meets the rule (ties by transaction id). Windows of one
   rule and variant on one account that overlap in time are one episode, one alert; a
   new account's qualifying credits are one episode. alert_id hashes rule, variant, account and
   the episode's first evidence transaction: the same evidence gives the same id on every run
   and in a rebuild, and an episode growing across runs keeps its id.

   Cost: incremental by alert_id. An interval re-evaluates only the accounts whose transactions
   changed in it (the vault satellites' load_ts, as gold.fact_transactions), over their facts
   from the longest window before the earliest changed booking (and from the start of any alert
   that may grow from there): a window that does not hold a changed transaction cannot change.
   An alert it replaces (an episode that merged into another, or now starts with an earlier
   transaction) is written as 'superseded' and deleted by the post-statement, so the table built
   run by run equals one built at once. */
MODEL (
  name gold.aml_alerts,
  kind INCREMENTAL_BY_UNIQUE_KEY (unique_key alert_id),
  cron '@hourly',
  grain alert_id,
  columns (
    alert_id text, rule_id text, variant text, account_id bigint, account_hk text,
    customer_id bigint, window_start timestamptz, window_end timestamptz, amount numeric(16, 2),
    currency text, transaction_count int, evidence bigint[], first_detected_at timestamptz,
    status text
  ),
  /* the alerts table grows with alerts (tens a month per 1,000 customers), not transactions */
  audits (
    not_null(
      columns := (
        alert_id, rule_id, account_id, account_hk, window_start, window_end, amount,
        transaction_count, evidence, first_detected_at, status
      )
    ),
    unique_values(columns := (alert_id)),
    accepted_values(
      column := rule_id,
      is_in := ('structuring', 'velocity', 'pass_through', 'new_account_high_value', 'network')
    ),
    accepted_values(column := status, is_in := ('open'))
  )
);

@DEF(structuring_window, @VAR('aml_structuring_window_days')::numeric * interval '1 day');
@DEF(velocity_count_window, @VAR('aml_velocity_count_window_minutes')::numeric * interval '1 minute');
@DEF(velocity_amount_window, @VAR('aml_velocity_amount_window_hours')::numeric * interval '1 hour');
@DEF(pass_through_window, @VAR('aml_pass_through_window_hours')::numeric * interval '1 hour');
@DEF(fan_window, @VAR('aml_fan_window_hours')::numeric * interval '1 hour');

with changed_transactions as (
  /* transactions whose vault rows changed in the interval (what gold.fact_transactions upserts) */
  select transaction_hk from @keys_loaded(
    transaction_hk,
    vault.sat_transaction_details, vault.sat_transaction_counterparty, vault.sat_transaction_deleted
  ) as loaded
),
touched_accounts as (
  /* their accounts, with the earliest booking among them: nothing booked earlier changed */
  select d.account_id, min(d.booked_at) as changed_from
  from changed_transactions as c
  join vault.sat_transaction_details as d on d.transaction_hk = c.transaction_hk
  where d.booked_at is not null and d.account_id is not null
  group by d.account_id
),
rule_spans (rule_id, variant, span) as (
  /* the longest a window of each sliding rule lasts, anchor to last transaction */
  values
    ('structuring', null::text, @structuring_window),
    ('velocity', 'count', @velocity_count_window),
    ('velocity', 'amount', @velocity_amount_window),
    ('pass_through', null::text, @pass_through_window),
    ('network', 'fan_in', 2 * @fan_window),
    ('network', 'fan_out', @fan_window)
),
account_openings as (
  /* touched accounts still in their new-account period when the change was booked */
  select t.account_id, a.opened_on,
    (a.opened_on::timestamp at time zone @VAR('bank_timezone')) as opened_at,
    ((a.opened_on + @VAR('aml_new_account_days')::int + 1)::timestamp
      at time zone @VAR('bank_timezone')) as period_end
  from touched_accounts as t
  join silver.current_accounts as a on a.account_id = t.account_id
  where (t.changed_from at time zone @VAR('bank_timezone'))::date
    <= a.opened_on + @VAR('aml_new_account_days')::int
),
reopened_alerts as (
  /* alerts already held that a change may alter: a sliding rule's ending within its span
     before the earliest changed booking, or later; a new account's, when it changed within its
     period */
  select a.*, t.changed_from - r.span as affected_from
  from gold.aml_alerts as a
  join touched_accounts as t on t.account_id = a.account_id
  join rule_spans as r on r.rule_id = a.rule_id and r.variant is not distinct from a.variant
  where a.window_end >= t.changed_from - r.span
  union all
  select a.*, null as affected_from
  from gold.aml_alerts as a
  join account_openings as o on o.account_id = a.account_id
  where a.rule_id = 'new_account_high_value'
),
scan_starts as (
  /* per touched account, the earliest booking a re-evaluated window can start at */
  select t.account_id,
    least(
      t.changed_from - greatest(
        @structuring_window, @velocity_count_window, @velocity_amount_window,
        @pass_through_window, 2 * @fan_window
      ),
      min(a.window_start)
    ) as scan_from
  from touched_accounts as t
  left join reopened_alerts as a
    on a.account_id = t.account_id and a.rule_id <> 'new_account_high_value'
  group by t.account_id, t.changed_from
),
facts as (
  /* the booked transactions in the monitored currency the sliding rules re-evaluate */
  select f.transaction_id, f.account_id, f.account_hk, f.transaction_type, f.direction, f.amount, f.booked_at,
    f.counterparty_account_id, f.description, f.loaded_at
  from scan_starts as s
  join gold.fact_transactions as f on f.account_id = s.account_id and f.booked_at >= s.scan_from
  where f.currency = @VAR('aml_currency')
),
debits as (
  select * from facts where direction = 'debit'
),
/* -- structuring ------------------------------------------------------------------------ */
cash_deposits as (
  select * from facts
  where direction = 'credit' and transaction_type = 'deposit' and description = 'CASH DEPOSIT'
    and amount between @VAR('aml_structuring_min_amount')::numeric
      and @VAR('aml_structuring_max_amount')::numeric
),
structuring_steps as (
  /* from each cash deposit, the deposits within the window after it, numbered in booking order */
  select a.account_id, a.transaction_id as anchor_id, d.transaction_id, d.booked_at, d.loaded_at,
    row_number() over (
      partition by a.transaction_id order by d.booked_at, d.transaction_id
    ) as step
  from cash_deposits as a
  join cash_deposits as d on d.account_id = a.account_id
    and (d.booked_at, d.transaction_id) >= (a.booked_at, a.transaction_id)
    and d.booked_at <= a.booked_at + @structuring_window
),
structuring_evidence as (
  select 'structuring' as rule_id, null::text as variant, s.account_id, s.anchor_id,
    s.transaction_id, s.booked_at, s.loaded_at, true as counted
  from structuring_steps as s
  where s.step <= @VAR('aml_structuring_min_deposits')::int
    and s.anchor_id in (
      select anchor_id from structuring_steps
      where step = @VAR('aml_structuring_min_deposits')::int
    )
),
/* -- velocity ---------------------------------------------------------------------------- */
debit_windows as (
  /* each debit with the count and sum of the debits in the windows starting at it (a superset:
     the frame includes debits booked at the same instant before it) */
  select d.*,
    count(*) over (
      partition by d.account_id order by d.booked_at
      range between current row and @velocity_count_window following
    ) as count_after,
    sum(d.amount) over (
      partition by d.account_id order by d.booked_at
      range between current row and @velocity_amount_window following
    ) as amount_after
  from debits as d
),
velocity_count_steps as (
  select a.account_id, a.transaction_id as anchor_id, d.transaction_id, d.booked_at, d.loaded_at,
    row_number() over (
      partition by a.transaction_id order by d.booked_at, d.transaction_id
    ) as step
  from debit_windows as a
  join debits as d on d.account_id = a.account_id
    and (d.booked_at, d.transaction_id) >= (a.booked_at, a.transaction_id)
    and d.booked_at <= a.booked_at + @velocity_count_window
  where a.count_after > @VAR('aml_velocity_max_debits')::int
),
velocity_amount_steps as (
  select a.account_id, a.transaction_id as anchor_id, d.transaction_id, d.booked_at, d.loaded_at,
    d.amount,
    sum(d.amount) over (
      partition by a.transaction_id order by d.booked_at, d.transaction_id
      rows between unbounded preceding and current row
    ) as running
  from debit_windows as a
  join debits as d on d.account_id = a.account_id
    and (d.booked_at, d.transaction_id) >= (a.booked_at, a.transaction_id)
    and d.booked_at <= a.booked_at + @velocity_amount_window
  where a.amount_after > @VAR('aml_velocity_max_amount')::numeric
),
velocity_evidence as (
  select 'velocity' as rule_id, 'count' as variant, s.account_id, s.anchor_id, s.transaction_id,
    s.booked_at, s.loaded_at, true as counted
  from velocity_count_steps as s
  where s.step <= @VAR('aml_velocity_max_debits')::int + 1
    and s.anchor_id in (
      select anchor_id from velocity_count_steps
      where step = @VAR('aml_velocity_max_debits')::int + 1
    )
  union all
  /* the debits up to the one that takes the sum over the threshold */
  select 'velocity', 'amount', s.account_id, s.anchor_id, s.transaction_id, s.booked_at,
    s.loaded_at, true
  from velocity_amount_steps as s
  where s.running - s.amount <= @VAR('aml_velocity_max_amount')::numeric
    and s.anchor_id in (
      select anchor_id from velocity_amount_steps
      where running > @VAR('aml_velocity_max_amount')::numeric
    )
),
/* -- pass-through ------------------------------------------------------------------------ */
pass_through_steps as (
  select c.account_id, c.transaction_id as anchor_id, c.amount as credit, d.transaction_id,
    d.booked_at, d.loaded_at, d.amount,
    sum(d.amount) over (
      partition by c.transaction_id order by d.booked_at, d.transaction_id
      rows between unbounded preceding and current row
    ) as running
  from facts as c
  join debits as d on d.account_id = c.account_id
    and d.booked_at > c.booked_at and d.booked_at <= c.booked_at + @pass_through_window
  where c.direction = 'credit' and c.amount >= @VAR('aml_pass_through_min_credit')::numeric
),
pass_through_met as (
  select distinct anchor_id from pass_through_steps
  where running >= @VAR('aml_pass_through_share')::numeric * credit
),
pass_through_evidence as (
  /* the credit (counted in the alert's amount), and the debits up to the one that meets it */
  select 'pass_through' as rule_id, null::text as variant, c.account_id,
    c.transaction_id as anchor_id, c.transaction_id, c.booked_at, c.loaded_at, true as counted
  from facts as c
  where c.transaction_id in (select anchor_id from pass_through_met)
  union all
  select 'pass_through', null, s.account_id, s.anchor_id, s.transaction_id, s.booked_at,
    s.loaded_at, false
  from pass_through_steps as s
  where s.anchor_id in (select anchor_id from pass_through_met)
    and s.running - s.amount < @VAR('aml_pass_through_share')::numeric * s.credit
),
/* -- network: fan-in and fan-out --------------------------------------------------------- */
transfers_in as (
  select * from facts where direction = 'credit' and counterparty_account_id is not null
),
fan_in_steps as (
  /* from each transfer in, the transfers in within the window, a sender counted at its first */
  select a.account_id, a.transaction_id as anchor_id, i.transaction_id, i.booked_at, i.loaded_at,
    i.amount, i.counterparty_account_id,
    row_number() over (
      partition by a.transaction_id, i.counterparty_account_id order by i.booked_at, i.transaction_id
    ) = 1 as new_sender,
    row_number() over (
      partition by a.transaction_id order by i.booked_at, i.transaction_id
    ) as step
  from transfers_in as a
  join transfers_in as i on i.account_id = a.account_id
    and (i.booked_at, i.transaction_id) >= (a.booked_at, a.transaction_id)
    and i.booked_at <= a.booked_at + @fan_window
),
fan_in_gathered as (
  /* the transfers in up to the one that brings the minimum number of senders */
  select s.*,
    count(*) filter (where s.new_sender) over (
      partition by s.anchor_id order by s.step rows between unbounded preceding and current row
    ) as senders
  from fan_in_steps as s
),
fan_in_legs as (
  select g.anchor_id, g.account_id, max(g.booked_at) as last_in, sum(g.amount) as received
  from fan_in_gathered as g
  where g.step <= (
    select min(x.step) from fan_in_gathered as x
    where x.anchor_id = g.anchor_id and x.senders = @VAR('aml_fan_min_accounts')::int
  )
  group by g.anchor_id, g.account_id
),
fan_in_out_steps as (
  select l.anchor_id, l.account_id, l.received, d.transaction_id, d.booked_at, d.loaded_at,
    d.amount,
    sum(d.amount) over (
      partition by l.anchor_id order by d.booked_at, d.transaction_id
      rows between unbounded preceding and current row
    ) as running
  from fan_in_legs as l
  join debits as d on d.account_id = l.account_id
    and d.booked_at > l.last_in and d.booked_at <= l.last_in + @fan_window
),
fan_in_met as (
  select distinct anchor_id from fan_in_out_steps
  where running >= @VAR('aml_fan_share')::numeric * received
),
fan_out_steps as (
  select c.account_id, c.transaction_id as anchor_id, c.amount as credit, o.transaction_id,
    o.booked_at, o.loaded_at, o.amount,
    row_number() over (
      partition by c.transaction_id, o.counterparty_account_id order by o.booked_at, o.transaction_id
    ) = 1 as new_payee,
    row_number() over (
      partition by c.transaction_id order by o.booked_at, o.transaction_id
    ) as step
  from facts as c
  join debits as o on o.account_id = c.account_id and o.counterparty_account_id is not null
    and o.booked_at > c.booked_at and o.booked_at <= c.booked_at + @fan_window
  where c.direction = 'credit' and c.amount >= @VAR('aml_fan_out_min_credit')::numeric
),
fan_out_running as (
  select s.*,
    count(*) filter (where s.new_payee) over (
      partition by s.anchor_id order by s.step rows between unbounded preceding and current row
    ) as payees,
    sum(s.amount) over (
      partition by s.anchor_id order by s.step rows between unbounded preceding and current row
    ) as running
  from fan_out_steps as s
),
fan_out_met as (
  /* the first transfer out at which both the payees and the share are reached */
  select anchor_id, min(step) as last_step from fan_out_running
  where payees >= @VAR('aml_fan_min_accounts')::int
    and running >= @VAR('aml_fan_share')::numeric * credit
  group by anchor_id
),
network_evidence as (
  /* fan_in: the transfers in (counted) and the debits up to the one that meets the share */
  select 'network' as rule_id, 'fan_in' as variant, g.account_id, g.anchor_id, g.transaction_id,
    g.booked_at, g.loaded_at, true as counted
  from fan_in_gathered as g
  where g.anchor_id in (select anchor_id from fan_in_met)
    and g.step <= (
      select min(x.step) from fan_in_gathered as x
      where x.anchor_id = g.anchor_id and x.senders = @VAR('aml_fan_min_accounts')::int
    )
  union all
  select 'network', 'fan_in', s.account_id, s.anchor_id, s.transaction_id, s.booked_at,
    s.loaded_at, false
  from fan_in_out_steps as s
  where s.anchor_id in (select anchor_id from fan_in_met)
    and s.running - s.amount < @VAR('aml_fan_share')::numeric * s.received
  union all
  /* fan_out: the credit, and the transfers out (counted) up to the one that meets the rule */
  select 'network', 'fan_out', c.account_id, c.transaction_id, c.transaction_id, c.booked_at,
    c.loaded_at, false
  from facts as c
  where c.transaction_id in (select anchor_id from fan_out_met)
  union all
  select 'network', 'fan_out', s.account_id, s.anchor_id, s.transaction_id, s.booked_at,
    s.loaded_at, true
  from fan_out_running as s
  join fan_out_met as m on m.anchor_id = s.anchor_id and s.step <= m.last_step
),
/* -- new account, high value ------------------------------------------------------------- */
new_account_evidence as (
  /* each qualifying credit is a window of its own, spanning the account's new-account period */
  select 'new_account_high_value' as rule_id, null::text as variant, f.account_id,
    f.transaction_id as anchor_id, f.transaction_id, f.booked_at, f.loaded_at, true as counted,
    o.opened_at, o.period_end, f.account_hk, f.amount
  from account_openings as o
  join gold.fact_transactions as f on f.account_id = o.account_id and f.booked_at < o.period_end
  where f.currency = @VAR('aml_currency') and f.direction = 'credit'
    and f.amount >= @VAR('aml_new_account_min_credit')::numeric
    and (f.booked_at at time zone @VAR('bank_timezone'))::date
      <= o.opened_on + @VAR('aml_new_account_days')::int
),
/* -- episodes ---------------------------------------------------------------------------- */
evidence as (
  select rule_id, variant, account_id, anchor_id, transaction_id, booked_at, loaded_at, counted
  from structuring_evidence
  union all
  select * from velocity_evidence
  union all
  select * from pass_through_evidence
  union all
  select * from network_evidence
  union all
  select rule_id, variant, account_id, anchor_id, transaction_id, booked_at, loaded_at, counted
  from new_account_evidence
),
qualifying_windows as (
  /* one per anchor: its span in time, and when the warehouse held all of it */
  select e.rule_id, e.variant, e.account_id, e.anchor_id,
    coalesce(min(n.opened_at), min(e.booked_at)) as span_start,
    coalesce(max(n.period_end), max(e.booked_at)) as span_end,
    max(e.loaded_at) as held_at
  from evidence as e
  left join new_account_evidence as n
    on e.rule_id = 'new_account_high_value' and n.anchor_id = e.anchor_id
  group by e.rule_id, e.variant, e.account_id, e.anchor_id
),
windows_reaching as (
  /* how far the windows before each one reach (same rule, variant and account) */
  select w.*,
    max(w.span_end) over (
      partition by w.rule_id, w.variant, w.account_id order by w.span_start, w.anchor_id
      rows between unbounded preceding and 1 preceding
    ) as reach_before
  from qualifying_windows as w
),
windows_in_episodes as (
  /* a window that starts after every earlier one ended opens a new episode */
  select w.*,
    sum(case when w.reach_before is null or w.span_start > w.reach_before then 1 else 0 end) over (
      partition by w.rule_id, w.variant, w.account_id order by w.span_start, w.anchor_id
      rows between unbounded preceding and current row
    ) as episode_no
  from windows_reaching as w
),
episode_evidence as (
  select w.rule_id, w.variant, w.account_id, w.episode_no, e.transaction_id,
    bool_or(e.counted) as counted
  from windows_in_episodes as w
  join evidence as e on e.rule_id = w.rule_id and e.variant is not distinct from w.variant
    and e.anchor_id = w.anchor_id
  group by w.rule_id, w.variant, w.account_id, w.episode_no, e.transaction_id
),
evidence_facts as (
  /* what the episodes need of their transactions (read above, not again from the facts) */
  select transaction_id, account_hk, amount, booked_at from facts
  union
  select transaction_id, account_hk, amount, booked_at from new_account_evidence
),
episodes as (
  select e.rule_id, e.variant, e.account_id, e.episode_no, min(f.account_hk) as account_hk,
    (array_agg(e.transaction_id order by f.booked_at, e.transaction_id))[1] as first_transaction_id,
    min(f.booked_at) as window_start,
    max(f.booked_at) as window_end,
    coalesce(sum(f.amount) filter (where e.counted), 0) as amount,
    count(*) as transaction_count,
    array_agg(e.transaction_id order by f.booked_at, e.transaction_id) as evidence
  from episode_evidence as e
  join evidence_facts as f on f.transaction_id = e.transaction_id
  group by e.rule_id, e.variant, e.account_id, e.episode_no
),
episode_detection as (
  select rule_id, variant, account_id, episode_no, min(held_at) as first_detected_at
  from windows_in_episodes
  group by rule_id, variant, account_id, episode_no
),
primary_holders as (
  /* each touched account's current primary holder (as gold.dim_account) */
  select distinct on (account_id) account_id, customer_id
  from silver.current_account_holders
  where account_id in (select account_id from touched_accounts)
    and is_valid and not is_deleted and holder_role = 'primary'
  order by account_id, valid_from desc
),
evaluated_alerts as (
  /* the episodes this interval may have changed: a sliding rule's ending within its span
     before the earliest changed booking or later (the others are held unchanged), every
     new-account episode of an account whose period changed */
  select @hash_key(e.rule_id, e.variant, e.account_id, e.first_transaction_id) as alert_id,
    e.*, d.first_detected_at
  from episodes as e
  join episode_detection as d on d.rule_id = e.rule_id
    and d.variant is not distinct from e.variant and d.account_id = e.account_id
    and d.episode_no = e.episode_no
  join touched_accounts as t on t.account_id = e.account_id
  left join rule_spans as r on r.rule_id = e.rule_id and r.variant is not distinct from e.variant
  where e.rule_id = 'new_account_high_value' or e.window_end >= t.changed_from - r.span
)
select
  a.alert_id, /* the alert's key: a hash of rule, variant, account and its first evidence transaction (stable as the episode grows) */
  a.rule_id, /* structuring, velocity, pass_through, new_account_high_value or network (the model's header states each rule) */
  a.variant, /* velocity: count or amount; network: fan_in or fan_out; null for the other rules */
  a.account_id, /* core-banking account id of the account alerted */
  a.account_hk, /* its hash key (joins gold.dim_account) */
  h.customer_id, /* the account's primary holder (core-banking customer id) */
  a.window_start, /* booked_at of the episode's first evidence transaction */
  a.window_end, /* booked_at of its last evidence transaction */
  a.amount::numeric(16, 2) as amount, /* the money the rule follows: cash deposits (structuring), debits (velocity), the credit passed through (pass_through), high-value credits (new account), transfers in (fan_in) or out (fan_out) */
  @VAR('aml_currency') as currency, /* the currency of the amount: the only one monitored */
  a.transaction_count::int as transaction_count, /* how many transactions the evidence holds */
  a.evidence, /* the evidence: transaction ids on the account, in booking order */
  a.first_detected_at, /* when the warehouse first held a complete qualifying window of the episode (the latest load time among that window's transactions) */
  'open' as status /* open: alerts await compliance's review (no case workflow in the warehouse yet); a run marks an alert it replaces 'superseded' and deletes it in the same run */
from evaluated_alerts as a
left join primary_holders as h on h.account_id = a.account_id
union all
select
  r.alert_id, r.rule_id, r.variant, r.account_id, r.account_hk, r.customer_id, r.window_start,
  r.window_end, r.amount, r.currency, r.transaction_count, r.evidence, r.first_detected_at,
  'superseded' as status
from reopened_alerts as r
where r.alert_id not in (select alert_id from evaluated_alerts);

/* An alert replaced by this interval's evaluation (merged into another episode, or its episode
   now starts earlier, or no longer meets its rule) leaves the table. */
@IF(
  @runtime_stage = 'evaluating',
  delete from @this_model where status = 'superseded'
);
@create_unique_index(alert_id);
@create_index(account_id, window_end);
@analyze_table();
