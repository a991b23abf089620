-- Operational bookkeeping of the warehouse: batches, watermarks. Applied idempotently on every run.
create schema if not exists raw;
create schema if not exists ops;

-- One row per extraction batch (one source table, one run). A batch commits with its rows and its
-- watermark in one transaction; a crash leaves no 'committed' row and no raw rows for it.
create table if not exists ops.batches (
    batch_id        bigint generated always as identity primary key,
    source          text not null,          -- record source, e.g. 'corebank'
    entity          text not null,          -- source table or feed
    status          text not null check (status in ('committed', 'failed')),
    rows_loaded     bigint not null default 0,
    rows_deleted    bigint not null default 0,  -- delete markers written
    watermark_from  timestamptz,            -- exclusive lower bound on updated_at
    watermark_to    timestamptz,            -- inclusive upper bound reached
    started_at      timestamptz not null,
    finished_at     timestamptz not null default clock_timestamp(),
    flow_run_id     text,
    error           text
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
