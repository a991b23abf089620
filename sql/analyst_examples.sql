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
where opened_on is not null
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
join gold.dim_account as a on a.account_hk = f.account_hk
where f.booking_date > (select max(booking_date) - 30 from gold.fact_transactions)
group by f.account_id, a.product_name
order by transactions desc, f.account_id
limit 10;
