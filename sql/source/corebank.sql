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

-- One row per transaction. Amounts are positive in the account's currency; `direction` gives the
-- sign. What the source booked (status 'booked') is what its ledger (account_balances) holds.
-- Columns after updated_at came with the ledger and the AML cases (they are nullable only so that
-- older loaders inserting by position keep working; the simulator always fills channel).
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
    counterparty     text,                      -- merchant, biller, payer or payee name
    description      text,                      -- deposits: 'CASH DEPOSIT' | 'CHEQUE DEPOSIT' | 'SALARY'
    created_at       timestamptz not null,      -- when the source recorded it (= initiated)
    updated_at       timestamptz not null,
    -- Where it was made: branch | atm | online | mobile | card | system. card: card payments;
    -- branch/atm: cash deposits (and cheques at a counter); online/mobile: payments the customer
    -- sends, cheques imaged in the app; system: posted without the customer at the bank (fees,
    -- interest, direct debits, payments and salaries arriving from other banks).
    channel          text,
    -- Card payments only (null otherwise), an MCC group: groceries (MCC 5411) | restaurants
    -- (5812, 5814) | travel (4111, 4112) | fuel (5541) | retail (5311, 5399) | health (5912).
    merchant_category text,
    -- Internal transfers (between two accounts of this bank): the other leg's account and
    -- transaction. A transfer is two rows booked at the same instant for the same amount and
    -- currency: a transfer_out debit on the payer and a transfer_in credit on the payee, each
    -- naming the other. Null for money to or from other banks.
    counterparty_account_id     bigint,
    counterparty_transaction_id bigint,
    -- The instant it was booked, null while pending: when a pending payment settles (its
    -- updated_at then), or created_at for what books at once (fees, interest, internal
    -- transfers, planted AML cases). Time windows of AML rules are measured on it.
    booked_at        timestamptz
);

create index if not exists transactions_updated_at on transactions (updated_at);
create index if not exists customers_updated_at on customers (updated_at);
create index if not exists accounts_updated_at on accounts (updated_at);
create index if not exists account_holders_updated_at on account_holders (updated_at);

-- The source's own ledger: one row per account, kept as transactions book, so that the warehouse's
-- balances can be checked against the source's. In the account's currency, to the penny:
--   balance = opening_balance + sum(amount) of booked credits - sum(amount) of booked debits
-- over the account's transactions with status 'booked', whatever else is wrong with them: a
-- re-posted duplicate, an amount <= 0 or an unknown currency label moves the balance as booked
-- (a warehouse that holds such rows back differs by exactly them). A pending transaction is not
-- in it until it books; a cancelled one (deleted while pending) never was.
-- The row changes with every booking: updated_at is the booked_at of the latest booking it holds
-- (or created_at before the first), so the balance covers exactly the account's bookings with
-- booked_at <= updated_at, and booked_transactions counts them.
create table if not exists account_balances (
    account_id          bigint primary key,
    currency            char(3) not null,           -- the account's currency; every amount here is in it
    -- When the account opened during the simulation: its opening deposit. For the accounts the
    -- bank already had on day 0: the balance brought forward from their history before it.
    -- Negative for credit cards and loans (money owed).
    opening_balance     numeric(14, 2) not null,
    balance             numeric(14, 2) not null,    -- the ledger balance (above); negative: overdrawn or owed
    booked_transactions bigint not null,            -- booked transactions in `balance`
    created_at          timestamptz not null,       -- when the account (and its ledger) opened
    updated_at          timestamptz not null
);
create index if not exists account_balances_updated_at on account_balances (updated_at);

-- Simulator bookkeeping (not extracted): which simulated day the source has reached.
create table if not exists sim_state (
    id             int primary key default 1 check (id = 1),
    seed           bigint not null,
    start_date     date not null,
    days_simulated int not null,
    next_customer_id    bigint not null,
    next_account_id     bigint not null,
    next_transaction_id bigint not null,
    feed_state     jsonb not null default '{}',  -- CRM/ops feed counters and open items
    aml_state      jsonb not null default '{}'   -- AML cases owed, under way, accounts reserved
);
-- Databases created before feed_state existed.
alter table sim_state add column if not exists feed_state jsonb not null default '{}';

-- Simulator bookkeeping (never extracted): the AML cases it planted, the ground truth against
-- which the warehouse's alerts are measured. A row is written on the day the case's last
-- transaction books, when the case first meets its rule (flows/simulate/aml.py states the rules).
create table if not exists sim_aml_cases (
    case_id         bigint primary key,
    rule            text not null,          -- structuring | velocity | pass_through | new_account_high_value | fan_in | fan_out
    variant         text,                   -- velocity: count (> 10 debits in an hour) | amount (> 50,000 out in 24 hours)
    account_id      bigint not null,        -- the account the rule fires on (fan_in: the one paid; fan_out: the payer)
    customer_id     bigint not null,        -- its primary holder
    window_start    timestamptz not null,   -- booked_at of the case's first transaction
    window_end      timestamptz not null,   -- booked_at of its last
    transaction_ids bigint[] not null,      -- every transaction planted for it (fan_in, fan_out: both legs of each internal transfer)
    planted_on      date not null           -- the simulated day it started
);
