/* Banking and CRM together, one row per customer the bank or its CRM knows, as of the bank's
   latest business day (the latest booking date in gold.fact_transactions: the warehouse's own
   "today", whatever the wall clock says). No balances (gold.customer_summary has them) and no
   personal data beyond the customer number.
   Windows: the last 90 days are the as-of day and the 89 before it (bank's zone).
   Engagement level, the first rule that holds:
     high   - 20 or more customer-initiated transactions in 90 days, and 2 or more products held
              or an interaction in 90 days;
     medium - 5 or more customer-initiated transactions in 90 days, or 2 or more interactions;
     low    - at least one customer-initiated transaction or interaction in 90 days;
     none   - otherwise.
   Churn risk, the first rule that holds (churn_reasons lists every rule that holds):
     high   - holds no open account any more (closed_all), or holds accounts but made no
              customer-initiated transaction in 90 days (inactive), or 2 or more complaints in 90
              days (complaints);
     medium - fewer than 5 customer-initiated transactions in 90 days (low_activity), a complaint
              in 90 days (complaint), an average interaction sentiment below 0 in 90 days
              (negative_sentiment), or a dormant account (dormant_account);
     low    - otherwise. A customer the CRM knows with no account at the bank yet is a prospect:
              churn risk 'not_applicable'.
   FULL: it grows with customers. Grain: customer_hk. */
MODEL (
  name gold.customer_360,
  kind FULL,
  grain customer_hk,
  audits (
    not_null(columns := (customer_hk, customer_id, as_of_date, accounts_held, products_held, transactions_90d, customer_transactions_90d, interactions_90d, interactions_total, open_opportunities, engagement_level, churn_risk)),
    unique_values(columns := (customer_hk)),
    accepted_values(column := engagement_level, is_in := ('high', 'medium', 'low', 'none')),
    accepted_values(column := churn_risk, is_in := ('high', 'medium', 'low', 'not_applicable'))
  )
);

with as_of as (
  /* the bank's latest business day: the newest booking date (an index lookup) */
  select coalesce(max(booking_date), @execution_ds::date) as as_of_date
  from gold.fact_transactions
),
current_accounts as (
  select account_hk, account_id, product_id, status
  from gold.dim_account
  where is_current
),
holdings as (
  /* the holdings in effect now, any role */
  select distinct ah.customer_hk, ah.account_id
  from silver.current_account_holders as ah
  where ah.is_valid and not ah.is_deleted and ah.valid_to is null
),
accounts_by_customer as (
  select
    h.customer_hk,
    count(*) filter (where a.status <> 'closed') as accounts_held,
    count(distinct a.product_id) filter (where a.status <> 'closed') as products_held,
    array_agg(distinct a.product_id order by a.product_id) filter (where a.status <> 'closed') as product_ids,
    count(*) filter (where a.status = 'dormant') as dormant_accounts,
    count(*) as accounts_ever
  from holdings as h
  join current_accounts as a on a.account_id = h.account_id
  group by h.customer_hk
),
transactions_by_customer as (
  /* the last 90 days' transactions on the accounts each customer holds now (a joint account's
     count for each of its holders), read through the fact's booking-date index */
  select
    h.customer_hk,
    count(*) as transactions_90d,
    count(*) filter (where f.is_customer_initiated) as customer_transactions_90d,
    max(f.booking_date) as last_transaction_date
  from gold.fact_transactions as f
  cross join as_of
  join holdings as h on h.account_id = f.account_id
  where f.booking_date between as_of.as_of_date - 89 and as_of.as_of_date
  group by h.customer_hk
),
latest_interactions as (
  select distinct on (s.interaction_hk) s.interaction_hk, s.effective_from as occurred_at, s.interaction_type, s.sentiment
  from vault.sat_interaction_details as s
  order by s.interaction_hk, s.effective_from desc, s.batch_id desc
),
interactions_by_customer as (
  select
    l.customer_hk,
    count(*) as interactions_total,
    count(*) filter (where (i.occurred_at at time zone @VAR('bank_timezone'))::date between as_of.as_of_date - 89 and as_of.as_of_date) as interactions_90d,
    count(*) filter (where i.interaction_type = 'complaint' and (i.occurred_at at time zone @VAR('bank_timezone'))::date between as_of.as_of_date - 89 and as_of.as_of_date) as complaints_90d,
    avg(i.sentiment) filter (where (i.occurred_at at time zone @VAR('bank_timezone'))::date between as_of.as_of_date - 89 and as_of.as_of_date) as sentiment_90d,
    max(i.occurred_at) as last_interaction_at
  from latest_interactions as i
  join vault.link_customer_interaction as l on l.interaction_hk = i.interaction_hk
  cross join as_of
  group by l.customer_hk
),
latest_opportunities as (
  select distinct on (s.opportunity_hk) s.opportunity_hk, s.stage, s.amount
  from vault.sat_opportunity_details as s
  order by s.opportunity_hk, s.effective_from desc, s.batch_id desc
),
opportunities_by_customer as (
  select
    l.customer_hk,
    count(*) filter (where o.stage in ('prospect', 'qualified', 'proposal')) as open_opportunities,
    coalesce(sum(o.amount) filter (where o.stage in ('prospect', 'qualified', 'proposal')), 0) as open_opportunity_amount
  from latest_opportunities as o
  join vault.link_customer_opportunity as l on l.opportunity_hk = o.opportunity_hk
  group by l.customer_hk
),
measures as (
  select
    c.customer_hk,
    c.customer_id,
    as_of.as_of_date,
    coalesce(a.accounts_held, 0) as accounts_held,
    coalesce(a.products_held, 0) as products_held,
    coalesce(a.product_ids, '{}') as product_ids,
    coalesce(a.dormant_accounts, 0) as dormant_accounts,
    coalesce(a.accounts_ever, 0) as accounts_ever,
    coalesce(t.transactions_90d, 0) as transactions_90d,
    coalesce(t.customer_transactions_90d, 0) as customer_transactions_90d,
    t.last_transaction_date,
    coalesce(i.interactions_90d, 0) as interactions_90d,
    coalesce(i.interactions_total, 0) as interactions_total,
    coalesce(i.complaints_90d, 0) as complaints_90d,
    round(i.sentiment_90d, 2) as sentiment_90d,
    i.last_interaction_at,
    coalesce(o.open_opportunities, 0) as open_opportunities,
    coalesce(o.open_opportunity_amount, 0) as open_opportunity_amount
  from vault.hub_customer as c
  cross join as_of
  left join accounts_by_customer as a on a.customer_hk = c.customer_hk
  left join transactions_by_customer as t on t.customer_hk = c.customer_hk
  left join interactions_by_customer as i on i.customer_hk = c.customer_hk
  left join opportunities_by_customer as o on o.customer_hk = c.customer_hk
),
churn_rules as (
  select
    m.*,
    array_remove(array[
      case when m.accounts_ever > 0 and m.accounts_held = 0 then 'closed_all' end,
      case when m.accounts_held > 0 and m.customer_transactions_90d = 0 then 'inactive' end,
      case when m.complaints_90d >= 2 then 'complaints' end,
      case when m.accounts_held > 0 and m.customer_transactions_90d between 1 and 4 then 'low_activity' end,
      case when m.complaints_90d = 1 then 'complaint' end,
      case when m.sentiment_90d < 0 then 'negative_sentiment' end,
      case when m.dormant_accounts > 0 then 'dormant_account' end
    ], null) as churn_reasons
  from measures as m
)
select
  customer_hk, /* Data Vault hash key of the customer (joins gold.dim_customer) */
  customer_id, /* core-banking customer number */
  as_of_date, /* the bank's latest business day, the end of every window */
  accounts_held, /* accounts held now (any role), not closed */
  products_held, /* distinct products among them */
  product_ids, /* those products' ids, sorted */
  dormant_accounts, /* of the accounts held, how many are dormant */
  transactions_90d, /* booked transactions in the last 90 days on the accounts held now */
  customer_transactions_90d, /* of which made by the customer (not fees, interest or incoming payments posted by the bank) */
  last_transaction_date, /* latest booking date in the last 90 days; null when none */
  interactions_90d, /* CRM interactions in the last 90 days */
  interactions_total, /* CRM interactions ever */
  complaints_90d, /* interactions of type complaint in the last 90 days */
  sentiment_90d::numeric as sentiment_90d, /* average interaction sentiment in the last 90 days, -1 to 1; null when none */
  last_interaction_at, /* when the latest interaction occurred; null when none */
  open_opportunities, /* sales opportunities at prospect, qualified or proposal */
  open_opportunity_amount, /* their amounts, pounds */
  case
    when customer_transactions_90d >= 20 and (products_held >= 2 or interactions_90d >= 1) then 'high'
    when customer_transactions_90d >= 5 or interactions_90d >= 2 then 'medium'
    when customer_transactions_90d >= 1 or interactions_90d >= 1 then 'low'
    else 'none'
  end::text as engagement_level, /* high, medium, low or none: the rules in the model's description */
  case
    when accounts_ever = 0 then 'not_applicable'
    when churn_reasons && array['closed_all', 'inactive', 'complaints'] then 'high'
    when cardinality(churn_reasons) > 0 then 'medium'
    else 'low'
  end::text as churn_risk, /* high, medium, low, or not_applicable for a prospect with no account */
  churn_reasons::text[] as churn_reasons /* every churn rule that holds: closed_all, inactive, complaints, low_activity, complaint, negative_sentiment, dormant_account */
from churn_rules
