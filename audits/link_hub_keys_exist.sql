/* Every hub key a link row carries exists in its hub: a link never points at a business key the
   vault does not know. Returns the orphaned link rows. */
AUDIT (
  name link_hub_keys_exist
);

select l.*
from @this_model as l
where not exists (
  select 1 from @hub as h where h.@hub_key = l.@hub_key
)
