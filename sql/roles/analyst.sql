-- The analyst role: reads prod's gold marts and nothing else (no raw, quarantine, ops, silver or
-- vault, no environment such as gold__staging). A group role without login: people log in as
-- their own roles, granted `analyst` (`create role alice login in role analyst`).
--
-- bankdw runs this only where its own role may create roles (the embedded demo, a superuser); on
-- a server an administrator runs it once. Masked personal data for analysts is issue 11's.
do $$
begin
    if not exists (select from pg_roles where rolname = 'analyst') then
        create role analyst nologin;
    end if;
end
$$;
