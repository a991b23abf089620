/* The latest version of each transaction silver holds (a delete marker wins over a row of the same batch):
   "latest" computed where it is read, so silver rows never need rewriting. A view: it costs
   nothing until queried. Grain: transaction_id. */
MODEL (
  name silver.current_transactions,
  kind VIEW,
  grain (transaction_id)
);

select distinct on (transaction_id) *
from silver.transactions
order by transaction_id, load_ts desc, batch_id desc, is_deleted desc
