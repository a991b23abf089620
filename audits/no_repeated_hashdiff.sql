/* No satellite row repeats the row before it: the satellite as it stood when the row was loaded
   (rows loaded up to it), in source order (effective_from, batch_id), within its `partition`
   (the key; the key and the period for an effectivity satellite). A late row may leave a later
   row repeating it (docs/data-vault.md): that is not a repeat, as the later row was loaded
   first. Returns the repeating rows of the processed window. */
AUDIT (
  name no_repeated_hashdiff
);

select r.*
from @this_model as r
cross join lateral (
  select p.hashdiff
  from @whole_table(@this_model) as p
  where @columns_match(p, r, @partition)
    and p.load_ts <= r.load_ts
    and (p.effective_from, p.batch_id) < (r.effective_from, r.batch_id)
  order by p.effective_from desc, p.batch_id desc
  limit 1
) as previous
where previous.hashdiff = r.hashdiff
