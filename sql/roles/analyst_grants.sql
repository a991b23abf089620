-- What the analyst role may read: prod's gold schema, its views today and every view SQLMesh
-- creates there later (a promote replaces them). Views are read with their owner's rights, so the
-- physical tables behind them (sqlmesh__gold) need no grant. Run by the pipeline's role, which
-- owns gold; idempotent.
grant usage on schema gold to analyst;
grant select on all tables in schema gold to analyst;
alter default privileges in schema gold grant select on tables to analyst;
