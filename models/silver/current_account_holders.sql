/* The latest version of each holding silver holds (a delete marker wins over a row of the same batch):
   "latest" computed where it is read, so silver rows never need rewriting. A view: it costs
   nothing until queried. Grain: account_id, customer_id, valid_from. */
MODEL (
  name silver.current_account_holders,
  kind VIEW,
  grain (account_id, customer_id, valid_from)
);

select distinct on (account_id, customer_id, valid_from) *
from silver.account_holders
order by account_id, customer_id, valid_from, load_ts desc, batch_id desc, is_deleted desc
