-- Operational bookkeeping of the warehouse: batches, watermarks. Applied idempotently on every run.
create schema if not exists raw;
create schema if not exists ops;
create schema if not exists quarantine;

-- One row per extraction batch (one source table, one run). A batch commits with its rows and its
-- watermark in one transaction; a crash leaves no 'committed' row and no raw rows for it.
create table if not exists ops.batches (
    batch_id        bigint generated always as identity primary key,
    source          text not null,          -- record source, e.g. 'corebank'
    entity          text not null,          -- source table or feed
    status          text not null check (status in ('committed', 'failed')),
    kind            text not null default 'extract' check (kind in ('extract', 'replay')),
    rows_in         bigint not null default 0,  -- rows read from the source or file
    rows_loaded     bigint not null default 0,  -- rows that passed the contract, now in raw
    rows_quarantined bigint not null default 0, -- rows that broke it, now in quarantine.<entity>
    rows_deleted    bigint not null default 0,  -- delete markers written
    watermark_from  timestamptz,            -- exclusive lower bound on updated_at
    watermark_to    timestamptz,            -- inclusive upper bound reached
    started_at      timestamptz not null,
    finished_at     timestamptz not null default clock_timestamp(),
    source_file     text,                   -- file name or object key, for file feeds
    flow_run_id     text,
    error           text
);

-- The ledger of feed files: every delivery of a file or object the loader decided about. The same
-- bytes are never loaded twice, under any name: a delivery whose bytes were loaded before is a
-- `repeat` (its batch_id and repeat_of name the file that loaded them). Discovery compares each
-- listed file's size and modification time (or ETag) with its name's last row.
create table if not exists ops.files (
    source      text not null check (source in ('landing', 's3')),
    entity      text not null,
    name        text not null,     -- path relative to the landing folder, or the object key
    version     int not null,      -- 1, 2, ... per name: its deliveries in the order decided
    size_bytes  bigint not null,
    sha256      text not null,
    etag        text,              -- S3 only: lets a run skip loaded objects without download
    batch_id    bigint not null references ops.batches (batch_id),
    loaded_at   timestamptz not null default clock_timestamp(),  -- when it was decided
    primary key (source, name, version)
);
alter table ops.files add column if not exists status text not null default 'loaded'
    check (status in ('loaded', 'repeat'));
alter table ops.files add column if not exists modified_ns bigint;  -- landing: mtime when listed
alter table ops.files add column if not exists repeat_of text;      -- the file loaded with these bytes
-- Once per name and content was the old rule; a repeat delivery of a name now has a row too.
alter table ops.files drop constraint if exists files_source_name_sha256_key;
create unique index if not exists files_loaded_once_per_name
    on ops.files (source, name, sha256) where status = 'loaded';
create index if not exists files_loaded_content on ops.files (sha256) where status = 'loaded';

-- Files in the landing folder (or keys in the bucket) that the loader did not load, and why:
-- another extension, a hidden or temporary name, a folder that is not a feed, a symbolic link
-- (refused: nothing outside the landing folder is read), a file still being written.
create table if not exists ops.ignored_files (
    source      text not null check (source in ('landing', 's3')),
    name        text not null,     -- as in ops.files; a folder ends in '/'
    reason      text not null,     -- symlink, hidden, temporary, unknown_extension, ...
    detail      text not null,     -- what the reason means, and what the sender can do
    first_seen  timestamptz not null default clock_timestamp(),
    last_seen   timestamptz not null default clock_timestamp(),
    primary key (source, name)
);

-- The high watermark per source table: the largest updated_at already in raw.
create table if not exists ops.watermarks (
    source          text not null,
    entity          text not null,
    high_watermark  timestamptz not null,
    batch_id        bigint not null references ops.batches (batch_id),
    updated_at      timestamptz not null default clock_timestamp(),
    primary key (source, entity)
);

-- Contract results per batch and rule (a failed batch keeps its results too).
create table if not exists ops.dq_results (
    batch_id        bigint not null references ops.batches (batch_id),
    entity          text not null,
    rule            text not null,
    column_name     text not null,
    evaluated       bigint not null,
    failed          bigint not null,
    percent         numeric(7, 3) not null,
    primary key (batch_id, rule)
);

-- Every distinct shape (columns and types) an entity has arrived in, and when it was first seen.
create table if not exists ops.schema_versions (
    source          text not null,
    entity          text not null,
    version         int not null,
    columns         jsonb not null,         -- [{"name": ..., "type": ...}, ...] in source order
    added_columns   text[] not null default '{}',
    removed_columns text[] not null default '{}',
    first_seen      timestamptz not null default clock_timestamp(),
    batch_id        bigint,
    primary key (source, entity, version)
);

-- What needed a person's attention (a rejected batch, drift that failed a batch).
create table if not exists ops.alerts (
    alert_id        bigint generated always as identity primary key,
    raised_at       timestamptz not null default clock_timestamp(),
    severity        text not null,
    source          text not null,
    entity          text not null,
    batch_id        bigint,
    message         text not null
);

-- Publication: the transformation sees a batch only once it is published, and every batch is
-- published by the run after it committed, stamped with that run's clock. Which rows an interval
-- holds is thus decided by what had committed, not by when a load started or whose clock said
-- what: a load committing after midnight, or an orchestrator clock minutes ahead of the
-- database's, still lands in an interval that has yet to be processed.
alter table ops.batches add column if not exists published_at timestamptz;
create index if not exists batches_unpublished on ops.batches (batch_id)
    where published_at is null and status = 'committed' and (rows_in > 0 or rows_deleted > 0);
create index if not exists batches_published_at on ops.batches (published_at);

-- The execution time SQLMesh was last given. Publication stamps never go below it, so no stamp
-- falls into an interval SQLMesh has already closed.
create table if not exists ops.transform_clock (
    singleton       boolean primary key default true check (singleton),
    execution_time  timestamptz not null,
    published_to    bigint,                 -- the last batch_id published, for reports
    updated_at      timestamptz not null default clock_timestamp()
);

-- SQLMesh's before_all calls this: a plan or run that does not hold the warehouse's SQLMesh lock
-- (flows/sqlmesh_lock.py: advisory lock (1650552427, 1), held by a session whose
-- application_name is `holder`) stops before it touches a table.
create or replace function ops.assert_sqlmesh_lock(holder text) returns void
language plpgsql as $$
begin
    if not exists (
        select 1
        from pg_locks as l
        join pg_stat_activity as a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted
          and l.database = (select oid from pg_database where datname = current_database())
          and l.classid = 1650552427 and l.objid = 1 and l.objsubid = 2
          and a.application_name = holder
    ) then
        raise exception 'SQLMesh was started without the warehouse''s SQLMesh lock'
            using hint = 'run it through bankdw (`bankdw transform`, or `bankdw sqlmesh <command>`), '
                         'which takes the lock and publishes new batches first';
    end if;
end
$$;

-- Whether `value` is valid input for the type `type_name`: pg_input_is_valid (PostgreSQL 16 only)
-- for PostgreSQL 14 and 15 too, so that a feed value its raw column's type refuses goes to
-- quarantine instead of failing the COPY. Only the types of feed columns (flows/extract/files.py):
-- a cast of a literal is not always the type's input function (varchar(3) truncates 'abcd',
-- pg_input_is_valid refuses it), so each type is listed and checked against pg_input_is_valid by
-- tests/test_server_versions.py. Static casts also keep plpgsql's cached plans (fast).
create or replace function ops.input_is_valid(value text, type_name text) returns boolean
language plpgsql stable strict as $$
begin
    case type_name
        when 'bigint' then perform value::bigint;
        when 'numeric' then perform value::numeric;
        when 'timestamp with time zone' then perform value::timestamptz;
        when 'date' then perform value::date;
        when 'boolean' then perform value::boolean;
        else raise exception 'ops.input_is_valid: type % is not supported', type_name
            using errcode = 'feature_not_supported';
    end case;
    return true;
exception when data_exception then  -- SQLSTATE class 22: how input functions refuse a value
    return false;
end
$$;

-- When each table's keys were last compared with the source in full (extract/deletes.py): a
-- frequent run checks only recent keys, and a full sweep runs when this is older than
-- DELETE_SWEEP_HOURS.
create table if not exists ops.delete_sweeps (
    source          text not null,
    entity          text not null,
    swept_at        timestamptz not null,   -- the source's clock at the sweep's snapshot
    batch_id        bigint not null references ops.batches (batch_id),
    primary key (source, entity)
);

-- The last SQLMesh run that succeeded per environment: the project files it ran (a digest) and
-- its execution time. A run whose files and execution time are the same has nothing to do, and
-- skips SQLMesh altogether (no Context, no plan): a run with nothing new costs next to nothing.
create table if not exists ops.sqlmesh_runs (
    environment     text primary key,
    fingerprint     text not null,
    execution_time  timestamptz not null,
    finished_at     timestamptz not null default clock_timestamp()
);

-- A model's index, created when missing (macros/maintenance.py): without the table lock that
-- `create index if not exists` takes before it looks, which waits for and cancels autovacuum.
create or replace function ops.create_index_if_missing(index_name text, ddl text)
returns boolean
language plpgsql as $$
begin
    if to_regclass(index_name) is not null then
        return false;
    end if;
    execute ddl;
    return true;
end
$$;

-- A model's statistics, refreshed when stale: never analyzed, its table grown by more than
-- `changed_share` since (its size on disk against the pages the last ANALYZE saw), or that share
-- of its rows written since (autovacuum's rule), before the next model plans a query on it. Size
-- comes first because the statistics views lag: a backend reports its counts at most once a
-- second, so a table a plan analyzed while empty and a run filled a moment later looked
-- unchanged, stayed "empty" to the planner, and a 300-day build's fact load ran nested loops for
-- minutes. Fresh statistics cost nothing to keep: a run that analyzed every table it wrote would
-- pay a sample of each, growing with the table, on every run.
create or replace function ops.analyze_if_stale(target regclass, changed_share float8 default 0.2)
returns boolean
language plpgsql as $$
declare
    pages_now   float8 := pg_relation_size(target) / current_setting('block_size')::float8;
    pages_seen  float8;
    live        bigint;
    modified    bigint;
    analyzed    timestamptz;
begin
    select relpages into pages_seen from pg_class where oid = target;
    select n_live_tup, n_mod_since_analyze, greatest(last_analyze, last_autoanalyze)
      into live, modified, analyzed
      from pg_stat_user_tables where relid = target;
    if analyzed is null
       or pages_now > (1 + changed_share) * greatest(pages_seen, 1)
       or modified > changed_share * greatest(live, 1) then
        execute format('analyze %s', target);
        return true;
    end if;
    return false;
end
$$;

-- Alerts are notified (flows/alerts.py): what kind of event, what to do next, which flow run and
-- task raised it (the correlation id of its logs), and which channels were told. A notification
-- that failed is retried by the next dispatch, up to a few times.
alter table ops.alerts add column if not exists kind text;
alter table ops.alerts add column if not exists next_step text;
alter table ops.alerts add column if not exists flow_run_id text;
alter table ops.alerts add column if not exists flow_run_name text;
alter table ops.alerts add column if not exists task_run_id text;
alter table ops.alerts add column if not exists task text;
alter table ops.alerts add column if not exists attempts int;
alter table ops.alerts add column if not exists error text;
alter table ops.alerts add column if not exists notified_at timestamptz;
alter table ops.alerts add column if not exists channels text[] not null default '{}';
alter table ops.alerts add column if not exists notify_attempts int not null default 0;
alter table ops.alerts add column if not exists notify_error text;
-- Severities are critical (act now: data stopped flowing) or warning (act today).
update ops.alerts set severity = 'critical' where severity = 'error';
create index if not exists alerts_pending on ops.alerts (alert_id) where notified_at is null;
create index if not exists alerts_flow_run on ops.alerts (flow_run_id);
create index if not exists alerts_raised_at on ops.alerts (raised_at);

-- Status and observability (flows/runs.py, `bankdw status`).
-- One row per flow run of the pipeline: inserted 'running' when the flow starts and finished as
-- 'completed' or 'failed' when it ends, with the run's figures. While it runs, the flow holds a
-- session-level advisory lock keyed by run_id (pg_advisory_lock(0x72756e73, run_id % 2^31-1)):
-- a process killed half-way loses the lock with its connection, so a 'running' row without its
-- lock is a crash (shown as 'crashed' by `bankdw status`, and set so by the next run's start).
create table if not exists ops.pipeline_runs (
    run_id            bigint generated always as identity primary key,
    flow_run_id       text,                   -- Prefect's flow run: the logs' correlation id
    flow_run_name     text,
    flow_name         text not null,          -- bankdw-run, bankdw-extract, bankdw-transform
    status            text not null default 'running'
                      check (status in ('running', 'completed', 'failed', 'crashed')),
    started_at        timestamptz not null default clock_timestamp(),
    finished_at       timestamptz,
    batches           int,                    -- ops.batches of the run (committed and failed)
    batches_failed    int,
    rows_in           bigint,                 -- rows read from the sources (committed batches)
    rows_loaded       bigint,                 -- rows that passed their contract, now in raw
    rows_quarantined  bigint,                 -- rows that broke it, now in quarantine.*
    rows_deleted      bigint,                 -- delete markers written to raw
    silver_rows       bigint,                 -- rows SQLMesh wrote per layer (its cursor counts;
    vault_rows        bigint,                 -- null: the run did not transform)
    gold_rows         bigint,
    dq_checks         bigint,                 -- rule evaluations in ops.dq_results of the run
    dq_score          numeric(6, 2),          -- their share that passed, in percent
    audits_passed     int,                    -- ops.audit_results of the run
    audits_failed     int,
    alerts_raised     int,                    -- ops.alerts of the run
    alerts_sent       int,                    -- of which reached at least one channel
    error             text                    -- why a failed run failed (never a secret)
);
create index if not exists pipeline_runs_running on ops.pipeline_runs (run_id)
    where status = 'running';
create index if not exists pipeline_runs_flow_run on ops.pipeline_runs (flow_run_id);
-- The figures of a run are read by its flow run id: batches, then their contract results.
create index if not exists batches_flow_run on ops.batches (flow_run_id);
-- Freshness: the latest batch that delivered rows, per source and per entity (a backward scan).
create index if not exists batches_delivered_by_source on ops.batches (source, finished_at)
    where status = 'committed' and rows_in > 0;
create index if not exists batches_delivered_by_entity on ops.batches (entity, finished_at)
    where status = 'committed' and rows_in > 0;

-- SQLMesh's audits as they ran: pass or fail per audit, model and transformation (SQLMesh keeps
-- no record of them). `transformation_id` groups one Transformation (flows/transform.py): the
-- latest results are those of the newest transformation that ran any audit.
create table if not exists ops.audit_results (
    audit_result_id   bigint generated always as identity primary key,
    transformation_id uuid not null,
    flow_run_id       text,                   -- null when SQLMesh ran outside a flow
    environment       text not null,
    model             text not null,          -- e.g. vault.link_account_transaction
    audit             text not null,          -- e.g. link_hub_keys_exist
    passed            boolean not null,
    bad_rows          bigint,                 -- rows a failed audit found
    recorded_at       timestamptz not null default clock_timestamp()
);
create index if not exists audit_results_transformation on ops.audit_results (transformation_id);
create index if not exists audit_results_flow_run on ops.audit_results (flow_run_id);
