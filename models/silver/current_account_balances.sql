/* The latest version of each account's ledger silver holds (a delete marker wins over a row of the
   same batch): the source's balances as last loaded, computed where it is read. The
   reconciliation audits compare gold with it. Grain: account_id. */
MODEL (
  name silver.current_account_balances,
  kind VIEW,
  grain (account_id)
);

select distinct on (account_id) *
from silver.account_balances
order by account_id, load_ts desc, batch_id desc, is_deleted desc
