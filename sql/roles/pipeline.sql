-- The role the pipeline writes as, on a server where an administrator runs `bankdw init` (compose's
-- server gets it from server_init.sql instead, with a password and the warehouse database it owns).
-- It may create schemas in this database (so it owns raw, ops, silver, vault, gold and SQLMesh's
-- schemas, which it creates) and nothing else: no superuser, no CREATEDB, no CREATEROLE. It is
-- created without login; `bankdw init --pipeline-password` gives it one (the password travels as a
-- SCRAM hash, never in clear). Idempotent: a role that exists keeps its attributes.
do $$
begin
    if not exists (select from pg_roles where rolname = 'bankdw_pipeline') then
        create role bankdw_pipeline nologin
            nosuperuser nocreatedb nocreaterole noreplication nobypassrls;
    end if;
end
$$;
do $$
begin
    execute format(
        'grant connect, create, temporary on database %I to bankdw_pipeline', current_database()
    );
    -- Analysts read gold here; analyst_grants.sql (run by the pipeline after each prod plan)
    -- gives them gold and nothing else.
    execute format('grant connect on database %I to analyst', current_database());
end
$$;
