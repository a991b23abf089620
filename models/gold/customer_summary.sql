/* One row per customer the vault holds: tenure, products held, total balance, value tier and
   lifecycle stage. Rules (thresholds fixed here):
   - holdings: the customer's accounts held now (an open period in vault.eff_sat_customer_account,
     primary or joint), not closed; products_held counts their distinct products.
   - total balance: the sum of those accounts' current balances (gold.account_activity), converted
     to GBP at fixed reference rates (EUR 0.85, USD 0.79 GBP per unit: a stated simplification, no
     FX feed exists); per-currency totals are kept beside it. A joint account counts in full for
     each holder.
   - value tier: 'high' when total_balance_gbp >= 50,000; 'medium' >= 5,000; 'low' >= 0;
     'negative' below 0 (owes more than it holds).
   - lifecycle stage: 'inactive' when it holds no account; 'new' when its first holding began
     less than 90 days before the run's day; 'dormant' when every account it holds is dormant
     (gold.account_activity); 'active' otherwise.
   FULL: it reads per-account and per-holding rows (account_activity, the effectivity satellite),
   never transactions; its cost grows with customers and accounts. Grain: customer_hk. */
MODEL (
  name gold.customer_summary,
  kind FULL,
  grain customer_hk,
  audits (
    not_null(columns := (customer_hk, customer_id, products_held, total_balance_gbp, value_tier, lifecycle_stage)),
    unique_values(columns := (customer_hk)),
    accepted_values(column := value_tier, is_in := ('high', 'medium', 'low', 'negative')),
    accepted_values(column := lifecycle_stage, is_in := ('new', 'active', 'dormant', 'inactive'))
  )
);

with periods as (
  /* each holding period's latest row in source order */
  select distinct on (e.customer_account_hk, e.start_date)
    e.customer_account_hk, e.start_date, e.end_date
  from vault.eff_sat_customer_account as e
  order by e.customer_account_hk, e.start_date, e.effective_from desc, e.batch_id desc
),
run_day as (
  select (@execution_tstz at time zone @VAR('bank_timezone'))::date as today
),
holdings as (
  /* accounts each customer holds today */
  select l.customer_hk, l.account_hk, min(p.start_date) as first_held
  from periods as p
  join vault.link_customer_account as l on l.customer_account_hk = p.customer_account_hk
  cross join run_day as r
  where p.start_date <= r.today and (p.end_date is null or r.today < p.end_date)
  group by l.customer_hk, l.account_hk
),
held_accounts as (
  select
    h.customer_hk, h.first_held, a.account_hk, a.currency, a.current_balance, a.is_dormant,
    p.account_product, a.closed_on
  from holdings as h
  join gold.account_activity as a on a.account_hk = h.account_hk
  left join lateral (
    select d.product_id as account_product from vault.sat_account_details as d
    where d.account_hk = h.account_hk
    order by d.effective_from desc, d.batch_id desc limit 1
  ) as p on true
  where a.closed_on is null
),
per_customer as (
  select
    customer_hk,
    min(first_held) as first_held,
    count(distinct account_product) as products_held,
    count(*) as accounts_held,
    sum(current_balance) filter (where currency = 'GBP') as balance_gbp,
    sum(current_balance) filter (where currency = 'EUR') as balance_eur,
    sum(current_balance) filter (where currency = 'USD') as balance_usd,
    sum(current_balance * case currency when 'GBP' then 1 when 'EUR' then 0.85 when 'USD' then 0.79 end) as total_gbp,
    bool_and(is_dormant) as all_dormant
  from held_accounts
  group by customer_hk
)
select
  c.customer_hk, /* the customer (hash key, joins gold.dim_customer) */
  c.customer_id, /* core-banking customer id */
  pc.first_held::date as customer_since, /* start of its earliest holding still held; null when it holds none */
  (r.today - pc.first_held::date)::integer as tenure_days, /* days from customer_since to the run's day */
  coalesce(pc.accounts_held, 0) as accounts_held, /* accounts held today, not closed */
  coalesce(pc.products_held, 0) as products_held, /* distinct products among them */
  coalesce(pc.balance_gbp, 0)::numeric(16, 2) as balance_gbp, /* sum of balances of GBP accounts */
  coalesce(pc.balance_eur, 0)::numeric(16, 2) as balance_eur, /* sum of balances of EUR accounts, in EUR */
  coalesce(pc.balance_usd, 0)::numeric(16, 2) as balance_usd, /* sum of balances of USD accounts, in USD */
  coalesce(pc.total_gbp, 0)::numeric(16, 2) as total_balance_gbp, /* all of them in GBP at fixed reference rates (EUR 0.85, USD 0.79) */
  case
    when coalesce(pc.total_gbp, 0) >= 50000 then 'high'
    when coalesce(pc.total_gbp, 0) >= 5000 then 'medium'
    when coalesce(pc.total_gbp, 0) >= 0 then 'low'
    else 'negative'
  end as value_tier, /* high >= 50,000 GBP; medium >= 5,000; low >= 0; negative below 0 */
  case
    when pc.customer_hk is null then 'inactive'
    when r.today - pc.first_held::date < 90 then 'new'
    when pc.all_dormant then 'dormant'
    else 'active'
  end as lifecycle_stage /* inactive: no account held; new: first holding under 90 days old; dormant: every account held is dormant; active otherwise */
from vault.hub_customer as c
cross join run_day as r
left join per_customer as pc on pc.customer_hk = c.customer_hk
