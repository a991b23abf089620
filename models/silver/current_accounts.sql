/* The latest version of each account silver holds (a delete marker wins over a row of the same batch):
   "latest" computed where it is read, so silver rows never need rewriting. A view: it costs
   nothing until queried. Grain: account_id. */
MODEL (
  name silver.current_accounts,
  kind VIEW,
  grain (account_id)
);

select distinct on (account_id) *
from silver.accounts
order by account_id, load_ts desc, batch_id desc, is_deleted desc
