/* Daily balances roll forward: a day's closing balance is its opening + credits - debits, and its
   opening is the day before's closing (an account's first row has no day before). Checks the rows
   a run wrote or carried: days from the one before the interval's first day (in the bank's zone),
   and days whose facts changed in the interval (last_change_at), looking up the day before by
   index. Returns the rows that break it. */
AUDIT (
  name daily_balance_rolls_forward
);

select d.*
from @whole_table(@this_model) as d
where (
    d.balance_date >= (@start_tstz at time zone @VAR('bank_timezone'))::date - 1
    or d.last_change_at >= @start_tstz
  )
  and (
    d.closing_balance is distinct from d.opening_balance + d.credits - d.debits
    or d.opening_balance is distinct from coalesce(
      (
        select p.closing_balance from @whole_table(@this_model) as p
        where p.account_hk = d.account_hk and p.balance_date = d.balance_date - 1
      ),
      case when not exists (
        select 1 from @whole_table(@this_model) as e
        where e.account_hk = d.account_hk and e.balance_date < d.balance_date
      ) then d.opening_balance end
    )
  )
