/* The periods of one relationship do not overlap: taken in start order, each has ended on or
   before the next one starts (a period's end is its latest row in source order). Checked for the
   relationships the processed window touched, over their whole history. Returns the periods
   that overlap the next one. */
AUDIT (
  name effectivity_periods_do_not_overlap
);

with touched as (
  select distinct @key as touched_key from @this_model
),
periods as (
  select distinct on (t.@key, t.start_date) t.@key, t.start_date, t.end_date
  from @whole_table(@this_model) as t
  where t.@key in (select touched_key from touched)
  order by t.@key, t.start_date, t.effective_from desc, t.batch_id desc
),
in_start_order as (
  select *, lead(start_date) over (partition by @key order by start_date) as next_start
  from periods
)
select *
from in_start_order
where next_start is not null and (end_date is null or end_date > next_start)
