-- The databases and login roles of a new PostgreSQL server for bankdw: docker-compose.yml's
-- `postgres` service runs this once, as the superuser, on an empty data volume
-- (/docker-entrypoint-initdb.d, after analyst.sql). Elsewhere an administrator can run it the
-- same way: PG_PIPELINE_PASSWORD=… PG_COREBANK_PASSWORD=… PG_PREFECT_PASSWORD=… psql -f … .
--
-- A psql script (psql 15 or later: \getenv): the passwords come from the environment, so that
-- they are never on a command line nor in this file. Unless all three are set and non-empty it
-- stops before creating anything (an unset one leaves `:'…'` unreplaced: a syntax error).
--
-- The superuser does nothing else: each service logs in as a role that owns only what it writes.
--   bankdw_pipeline  owns the `warehouse` database (every schema bankdw and SQLMesh create in it)
--                    and reads the source; no superuser, no CREATEDB, no CREATEROLE.
--   corebank         owns the `corebank` database: the core bank's own role (the demo simulator
--                    writes with it, `bankdw simulate --source-url`); bankdw never logs in as it.
--   prefect          owns the `prefect` database of the Prefect server.
--   analyst          (analyst.sql) a group role without login: prod's gold, read-only.

\set ON_ERROR_STOP on
\getenv pipeline_password PG_PIPELINE_PASSWORD
\getenv corebank_password PG_COREBANK_PASSWORD
\getenv prefect_password PG_PREFECT_PASSWORD

select set_config(
    'bankdw.passwords_given',
    (:'pipeline_password' <> '' and :'corebank_password' <> '' and :'prefect_password' <> '')::text,
    false
);
do $$
begin
    if not current_setting('bankdw.passwords_given')::boolean then
        raise exception 'PG_PIPELINE_PASSWORD, PG_COREBANK_PASSWORD and PG_PREFECT_PASSWORD must all be set';
    end if;
end
$$;

create role bankdw_pipeline login password :'pipeline_password'
    nosuperuser nocreatedb nocreaterole noreplication nobypassrls;
create role corebank login password :'corebank_password'
    nosuperuser nocreatedb nocreaterole noreplication nobypassrls;
create role prefect login password :'prefect_password'
    nosuperuser nocreatedb nocreaterole noreplication nobypassrls;

create database warehouse owner bankdw_pipeline;
create database corebank owner corebank;
create database prefect owner prefect;

-- Only the roles that need a database may connect to it (PUBLIC may connect to every database by
-- default, and create temporary tables there): each owner, bankdw_pipeline to the source it reads,
-- and analysts to the warehouse, where analyst_grants.sql lets them read prod's gold only.
revoke all on database warehouse, corebank, prefect from public;
grant connect on database warehouse to analyst;
grant connect on database corebank to bankdw_pipeline;

-- The source: bankdw reads it (in a read-only transaction) and never writes to it. Every table
-- the core bank's role creates in `public` (the simulator's tables, created by its first run) is
-- readable by the pipeline from the moment it exists.
\connect corebank
alter default privileges for role corebank in schema public grant select on tables to bankdw_pipeline;
grant usage on schema public to bankdw_pipeline;
