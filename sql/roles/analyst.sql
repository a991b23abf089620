-- The analyst role: reads prod's gold marts and nothing else (no raw, quarantine, ops, silver or
-- vault, no environment such as gold__staging). A group role without login: people log in as
-- their own roles, granted `analyst` (`create role alice login in role analyst`).
--
-- Created here only where the pipeline may create roles (the embedded demo, a superuser); on a
-- server an administrator runs this part once (docker-compose.yml's init script does). A fuller
-- analyst role (masked personal data) belongs to a later issue.
do $$
begin
    if not exists (select from pg_roles where rolname = 'analyst') then
        create role analyst nologin;
    end if;
end
$$;
