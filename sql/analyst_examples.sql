-- Questions analysts ask of gold, each answered by one query that the `analyst` role may run.
--
-- Each block is: a `-- name:` line (a short identifier), a `-- question:` line (what it answers),
-- a `-- columns:` line (the columns it returns, in order) and the query, ending with `;`.
-- tests/test_analyst.py runs every block as the analyst and checks that it returns rows with
-- exactly these columns: adding a question is adding a block here.
-- Run one by hand: bankdw db psql, then paste it (or `bankdw sql "<query>"`).

-- name: transactions_per_month
-- question: How many transactions were booked each month, and for how much, per currency?
-- columns: month, currency, transactions, total_amount
select
  date_trunc('month', booking_date)::date as month,
  currency,
  count(*) as transactions,
  sum(amount) as total_amount
from gold.fact_transactions
group by 1, 2
order by 1, 2;

-- name: net_flow_per_month
-- question: What came in and went out each month, and the net flow, per currency?
-- columns: month, currency, money_in, money_out, net_flow
select
  date_trunc('month', booking_date)::date as month,
  currency,
  sum(amount) filter (where direction = 'credit') as money_in,
  sum(amount) filter (where direction = 'debit') as money_out,
  sum(signed_amount) as net_flow
from gold.fact_transactions
group by 1, 2
order by 1, 2;

-- name: transactions_by_type
-- question: Which kinds of transaction are most common, and how large are they on average?
-- columns: transaction_type, direction, transactions, average_amount, total_amount
select
  transaction_type,
  direction,
  count(*) as transactions,
  round(avg(amount), 2) as average_amount,
  sum(amount) as total_amount
from gold.fact_transactions
group by 1, 2
order by transactions desc;

-- name: accounts_per_product
-- question: How many accounts does each product have, and how many of them are open?
-- columns: product_category, product_name, accounts, open_accounts
select
  product_category,
  product_name,
  count(*) as accounts,
  count(*) filter (where status = 'open') as open_accounts
from gold.dim_account
where is_current
group by 1, 2
order by accounts desc;

-- name: accounts_by_status
-- question: How many accounts are open, dormant or closed?
-- columns: status, accounts, share
select
  status,
  count(*) as accounts,
  round(count(*) * 100.0 / sum(count(*)) over (), 1) as share
from gold.dim_account
where is_current
group by status
order by accounts desc;

-- name: joint_accounts
-- question: How many accounts are held jointly, per product category?
-- columns: product_category, accounts, joint_accounts, joint_share
select
  product_category,
  count(*) as accounts,
  count(*) filter (where holder_count > 1) as joint_accounts,
  round(count(*) filter (where holder_count > 1) * 100.0 / count(*), 1) as joint_share
from gold.dim_account
where is_current
group by product_category
order by joint_accounts desc;

-- name: accounts_opened_per_month
-- question: How many accounts were opened each month, per product category?
-- columns: month, product_category, accounts_opened
select
  date_trunc('month', opened_on)::date as month,
  product_category,
  count(*) as accounts_opened
from gold.dim_account
where is_current and opened_on is not null
group by 1, 2
order by 1, 2;

-- name: customers_by_age_band
-- question: How are today's customers spread over age bands?
-- columns: age_band, customers, share
select
  coalesce(age_band, 'unknown') as age_band,
  count(*) as customers,
  round(count(*) * 100.0 / sum(count(*)) over (), 1) as share
from gold.dim_customer
where is_current
group by 1
order by 1;

-- name: customers_by_city
-- question: Which ten towns and cities have the most customers today?
-- columns: city, customers
select city, count(*) as customers
from gold.dim_customer
where is_current
group by city
order by customers desc, city
limit 10;

-- name: customers_by_email_domain
-- question: Which e-mail providers do customers use (domains only; addresses are masked)?
-- columns: email_domain, customers
select split_part(email_masked, '@', 2) as email_domain, count(*) as customers
from gold.dim_customer
where is_current and email_masked is not null
group by 1
order by customers desc, 1
limit 10;

-- name: new_customers_per_month
-- question: How many customers joined each month?
-- columns: month, new_customers
select date_trunc('month', valid_from)::date as month, count(*) as new_customers
from gold.dim_customer
where valid_from = (
  select min(first.valid_from) from gold.dim_customer as first
  where first.customer_hk = dim_customer.customer_hk
)
group by 1
order by 1;

-- name: customers_by_number_of_versions
-- question: How often have customers' details (address, e-mail, phone, name) changed?
-- columns: versions, customers
select versions, count(*) as customers
from (select customer_id, count(*) as versions from gold.dim_customer group by customer_id) as v
group by versions
order by versions;

-- name: busiest_accounts_last_30_days
-- question: Which accounts booked the most transactions in the 30 days up to the latest booking?
-- columns: account_id, product_name, transactions, money_out, last_booking
select
  f.account_id,
  a.product_name,
  count(*) as transactions,
  coalesce(sum(f.amount) filter (where f.direction = 'debit'), 0) as money_out,
  max(f.booking_date) as last_booking
from gold.fact_transactions as f
join gold.dim_account as a on a.account_hk = f.account_hk and a.is_current
where f.booking_date > (select max(booking_date) - 30 from gold.fact_transactions)
group by f.account_id, a.product_name
order by transactions desc, f.account_id
limit 10;

-- name: monthly_spend_by_channel
-- question: How much did customers spend each month through each channel (branch, ATM, online, mobile, card)?
-- columns: month, channel, payments, spend
select
  date_trunc('month', booking_date)::date as month,
  channel,
  count(*) as payments,
  sum(amount) as spend
from gold.fact_transactions
where direction = 'debit' and is_customer_initiated
group by 1, 2
order by 1, spend desc;

-- name: monthly_card_spend_by_merchant_category
-- question: How much was spent by card each month in each merchant category, in GBP?
-- columns: month, merchant_category, card_payments, spend, average_payment
select
  date_trunc('month', booking_date)::date as month,
  merchant_category,
  count(*) as card_payments,
  sum(amount) as spend,
  round(avg(amount), 2) as average_payment
from gold.fact_transactions
where transaction_type = 'card_payment' and currency = 'GBP'
group by 1, 2
order by 1, spend desc;

-- name: balance_of_an_account_on_a_date
-- question: What was an account's balance at the end of a given day (here: the first account, 31 January 2026)?
-- columns: account_id, balance_date, currency, opening_balance, credits, debits, closing_balance
with wanted as (
  /* change these two values to ask about another account or day */
  select (select min(account_id) from gold.fact_account_daily_balance) as account_id,
         date '2026-01-31' as on_date
)
select b.account_id, b.balance_date, b.currency, b.opening_balance, b.credits, b.debits,
       b.closing_balance
from gold.fact_account_daily_balance as b
join wanted as w on w.account_id = b.account_id and w.on_date = b.balance_date;

-- name: dormant_or_quiet_accounts_with_high_balances
-- question: Which accounts holding 5,000 or more have gone longest without a customer-initiated transaction, and which are dormant?
-- columns: account_id, currency, current_balance, last_customer_initiated_date, days_without_customer_activity, is_dormant
select
  account_id,
  currency,
  current_balance,
  last_customer_initiated_date,
  balance_as_of - coalesce(last_customer_initiated_date, opened_on) as days_without_customer_activity,
  is_dormant
from gold.account_activity
where current_balance >= 5000 and closed_on is null
order by is_dormant desc, days_without_customer_activity desc, current_balance desc
limit 20;

-- name: customers_by_value_tier_and_lifecycle
-- question: How many customers are in each value tier and lifecycle stage, and what do they hold?
-- columns: value_tier, lifecycle_stage, customers, total_balance_gbp
select value_tier, lifecycle_stage, count(*) as customers, sum(total_balance_gbp) as total_balance_gbp
from gold.customer_summary
group by 1, 2
order by 1, 2;

-- name: customers_at_churn_risk
-- question: Which customers are most at risk of churning, and why?
-- columns: customer_id, churn_risk, churn_reasons, engagement_level, customer_transactions_90d, complaints_90d, last_transaction_date
select customer_id, churn_risk, churn_reasons, engagement_level, customer_transactions_90d,
       complaints_90d, last_transaction_date
from gold.customer_360
where churn_risk <> 'not_applicable'
order by case churn_risk when 'high' then 1 when 'medium' then 2 else 3 end,
         customer_transactions_90d, customer_id
limit 20;

-- name: churn_risk_by_engagement
-- question: How many customers are at each churn risk, by engagement level?
-- columns: churn_risk, engagement_level, customers
select churn_risk, engagement_level, count(*) as customers
from gold.customer_360
group by 1, 2
order by 1, 2;

-- name: open_aml_alerts_by_rule
-- question: How many AML alerts are open per rule, how much money do they involve, and when was the latest detected?
-- columns: rule_id, variant, open_alerts, accounts, amount, latest_detected_at
select
  r.rule_id,
  r.variant,
  count(a.alert_id) as open_alerts,
  count(distinct a.account_id) as accounts,
  coalesce(sum(a.amount), 0) as amount,
  max(a.first_detected_at) as latest_detected_at
from (values ('structuring', null), ('velocity', 'count'), ('velocity', 'amount'),
             ('pass_through', null), ('new_account_high_value', null),
             ('network', 'fan_in'), ('network', 'fan_out')) as r(rule_id, variant)
left join gold.aml_alerts as a
  on a.rule_id = r.rule_id and a.variant is not distinct from r.variant and a.status = 'open'
group by r.rule_id, r.variant
order by open_alerts desc, r.rule_id, r.variant;

-- name: order_fulfilment_by_product
-- question: What share of each product's orders were fulfilled or cancelled, month by month?
-- columns: order_month, product_key, orders, fulfilment_rate, cancellation_rate
select order_month, product_key, orders, fulfilment_rate, cancellation_rate
from gold.order_metrics
order by order_month, orders desc, product_key;

-- name: data_quality_on_the_latest_day
-- question: How did each source entity score on data quality on the latest day?
-- columns: entity, rows_read, completeness, validity, uniqueness, timeliness, dq_score
select entity, rows_read, completeness, validity, uniqueness, timeliness, dq_score
from gold.dq_scorecard
where score_date = (select max(score_date) from gold.dq_scorecard)
order by dq_score, entity;

-- name: spend_on_working_days_and_weekends
-- question: Do customers spend more per day on working days, weekends or bank holidays?
-- columns: day_kind, days, spend, spend_per_day
select
  case when d.is_bank_holiday then 'bank holiday' when d.is_weekend then 'weekend'
       else 'working day' end as day_kind,
  count(distinct d.calendar_date) as days,
  sum(f.amount) as spend,
  round(sum(f.amount) / count(distinct d.calendar_date), 2) as spend_per_day
from gold.fact_transactions as f
join gold.dim_date as d on d.date_key = f.date_key
where f.direction = 'debit' and f.is_customer_initiated and f.currency = 'GBP'
group by 1
order by 1;
