/* A key the processed window wrote appears once in the whole table: a hub or link key is loaded
   once, ever. (SQLMesh audits an incremental model's window only, which cannot see a repeat in an
   earlier interval; this reads the window's keys in the whole table, by index.) Returns the
   window's rows whose key repeats. */
AUDIT (
  name unique_keys
);

select w.*
from @this_model as w
where (select count(*) from @whole_table(@this_model) as t where t.@column = w.@column) > 1
