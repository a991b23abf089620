/* Every pointer of a PIT row names a row of its satellite (key and load time). Returns the PIT
   rows of the processed window that point at nothing. */
AUDIT (
  name pit_points_at_existing_rows
);

select p.*
from @this_model as p
where p.@pointer is not null
  and not exists (
    select 1 from @satellite as s where s.@key = p.@key and s.load_ts = p.@pointer
  )
