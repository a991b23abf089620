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

-- Every feed file or object loaded: never twice; a name re-sent with new content is a new version.
create table if not exists ops.files (
    source      text not null check (source in ('landing', 's3')),
    entity      text not null,
    name        text not null,     -- path relative to the landing folder, or the object key
    version     int not null,      -- 1, 2, ... per name
    size_bytes  bigint not null,
    sha256      text not null,
    etag        text,              -- S3 only: lets a run skip loaded objects without download
    batch_id    bigint not null references ops.batches (batch_id),
    loaded_at   timestamptz not null default clock_timestamp(),
    primary key (source, name, version),
    unique (source, name, sha256)
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
