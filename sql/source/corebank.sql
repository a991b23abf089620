-- The simulated core-banking OLTP schema (database `corebank` by default).
-- Every table carries created_at / updated_at: extraction is incremental on updated_at.
create table if not exists products (
    product_id     text primary key,            -- e.g. 'CUR-STD'
    name           text not null,
    category       text not null,               -- current | savings | credit_card | loan
    interest_rate  numeric(6, 4) not null,      -- annual rate, 0.0125 = 1.25 %
    created_at     timestamptz not null,
    updated_at     timestamptz not null
);

create table if not exists customers (
    customer_id    bigint primary key,
    first_name     text not null,
    last_name      text not null,
    email          text,
    phone          text,
    date_of_birth  date,
    address_line1  text,
    city           text,
    postcode       text,
    country        char(2) not null default 'GB',
    created_at     timestamptz not null,
    updated_at     timestamptz not null
);

create table if not exists accounts (
    account_id     bigint primary key,
    product_id     text not null,
    sort_code      text,                        -- 'NN-NN-NN'
    account_number text,                        -- 8 digits
    iban           text,                        -- GB IBAN built from sort code and account number
    currency       char(3) not null,
    status         text not null,               -- open | dormant | closed
    opened_on      date not null,
    closed_on      date,
    created_at     timestamptz not null,
    updated_at     timestamptz not null
);

-- Joint accounts: many customers to many accounts, each holding with a validity range.
create table if not exists account_holders (
    account_id     bigint not null,
    customer_id    bigint not null,
    holder_role    text not null,               -- primary | joint
    valid_from     date not null,
    valid_to       date,                        -- null while the holding is current
    created_at     timestamptz not null,
    updated_at     timestamptz not null,
    primary key (account_id, customer_id, valid_from)
);

create table if not exists transactions (
    transaction_id   bigint primary key,
    account_id       bigint not null,
    reference        text not null,             -- payment reference; a re-posted duplicate repeats it
    transaction_type text not null,             -- deposit | card_payment | transfer_in | transfer_out | direct_debit | fee | interest
    direction        text not null,             -- credit | debit
    amount           numeric(14, 2) not null,   -- positive; direction gives the sign
    currency         char(3) not null,
    status           text not null,             -- pending | booked (cancelled ones are deleted)
    transaction_date date not null,             -- when the customer initiated it
    booking_date     date,                      -- set when booked
    counterparty     text,
    description      text,
    created_at       timestamptz not null,
    updated_at       timestamptz not null
);

create index if not exists transactions_updated_at on transactions (updated_at);
create index if not exists customers_updated_at on customers (updated_at);
create index if not exists accounts_updated_at on accounts (updated_at);
create index if not exists account_holders_updated_at on account_holders (updated_at);

-- Simulator bookkeeping (not extracted): which simulated day the source has reached.
create table if not exists sim_state (
    id             int primary key default 1 check (id = 1),
    seed           bigint not null,
    start_date     date not null,
    days_simulated int not null,
    next_customer_id    bigint not null,
    next_account_id     bigint not null,
    next_transaction_id bigint not null,
    feed_state     jsonb not null default '{}'  -- CRM/ops feed counters and open items
);
-- Databases created before feed_state existed.
alter table sim_state add column if not exists feed_state jsonb not null default '{}';
