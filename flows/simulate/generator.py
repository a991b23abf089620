"""One simulated day of the core bank, computed without touching the database.

`generate_day(snapshot, ...)` turns the source as it stood at the start of the day into that day's
inserts, updates and deletes. Every choice comes from a `random.Random` and a `Faker` seeded from
(seed, day number) and from the snapshot, which the writer reads in key order: the same database
and seed therefore always give the same day, however the run was split.

Customers, accounts and ordinary transactions are drawn here from the `core` stream; what was
added later draws from streams of its own, so that it left the core stream's draws as they were:
channels (`channels`, payments.py), opening balances (`ledger`, ledger.py), transfers between the
bank's accounts (`transfers`, payments.py) and planted AML cases (`aml`, aml.py).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import schwifty
from faker import Faker

from flows.simulate import aml, ledger, payments
from flows.simulate.feeds import FeedDay, FeedRates, FeedState, draw_count, generate_feeds
from flows.simulate.feeds import moment as random_moment
from flows.simulate.feeds import pick_bad as pick_bad_rows
from flows.simulate.rows import (
    AccountRef,
    AccountRow,
    AccountStatusUpdate,
    CustomerRow,
    CustomerUpdate,
    DayChanges,
    HolderEnd,
    HolderRow,
    ProductRow,
    Settlement,
    SimState,
    Snapshot,
    TransactionRow,
)

BANK_CODE = "BKDW"  # the simulated bank's BIC prefix, as GB IBANs carry it
BRANCH_SORT_CODES = (
    "20-14-53", "20-27-91", "20-32-06", "20-45-77", "20-51-38", "20-68-12",
    "20-73-40", "20-86-25", "20-90-64", "20-99-01",
)  # fmt: skip
GOOD_CURRENCIES = ("GBP", "EUR", "USD")
BAD_CURRENCIES = ("XYZ", "GPB")
ACCOUNT_BAD_KINDS = ("invalid_sort_code", "invalid_iban")
TRANSACTION_BAD_KINDS = (
    "non_positive_amount",
    "unknown_currency",
    "future_booking_date",
    "duplicate_transaction",
)
BAD_KINDS = ACCOUNT_BAD_KINDS + TRANSACTION_BAD_KINDS


@dataclass(frozen=True)
class Rates:
    """Every daily rate of the simulation in one place (shares are per day unless noted)."""

    second_account: float = 0.40  # day-0 customers holding two accounts
    joint_account: float = 0.15  # accounts with a second, joint holder
    new_customers: float = 0.003  # of the customer base
    address_change: float = 0.01  # of customers
    email_change: float = 0.005  # of customers
    missing_email: float = 0.02  # new customers without an e-mail address
    missing_phone: float = 0.05
    becomes_dormant: float = 0.002  # of open accounts
    becomes_closed: float = 0.001  # of open and dormant accounts
    joint_holder_leaves: float = 0.0005  # of customers (drawn from the current joint holdings)
    transactions_per_account: tuple[float, ...] = (0.35, 0.40, 0.18, 0.07)  # P(0), .., P(3)
    booked_on_settlement: float = 0.97  # the rest are cancelled (deleted)
    large_amount: float = 0.005  # transactions of a few thousand pounds
    currency_weights: tuple[float, ...] = (0.92, 0.05, 0.03)  # GBP, EUR, USD
    internal_transfer: float = 0.03  # of open accounts: a transfer to another account of the bank
    feeds: FeedRates = field(default_factory=FeedRates)


RATES = Rates()


# product_id, name, category, annual interest rate, share of new accounts
PRODUCT_CATALOGUE = (
    ("CUR-STD", "Standard Current Account", "current", "0.0000", 0.34),
    ("CUR-PREM", "Premier Current Account", "current", "0.0050", 0.08),
    ("CUR-STU", "Student Current Account", "current", "0.0000", 0.06),
    ("SAV-EASY", "Easy Access Saver", "savings", "0.0325", 0.18),
    ("SAV-FIX1Y", "One-Year Fixed Rate Saver", "savings", "0.0440", 0.07),
    ("SAV-ISA", "Cash ISA", "savings", "0.0410", 0.09),
    ("CC-CLASSIC", "Classic Credit Card", "credit_card", "0.2290", 0.12),
    ("LOAN-PERS", "Personal Loan", "loan", "0.0690", 0.06),
)
PRODUCT_IDS = tuple(p[0] for p in PRODUCT_CATALOGUE)
PRODUCT_WEIGHTS = tuple(p[4] for p in PRODUCT_CATALOGUE)


class TxKind(NamedTuple):
    name: str
    direction: str
    weight: float
    low_pence: int
    high_pence: int
    booked_at_once: bool  # the bank posts its own fees and interest straight away


TX_KINDS = (
    TxKind("card_payment", "debit", 0.40, 100, 20_000, False),
    TxKind("direct_debit", "debit", 0.12, 1_000, 50_000, False),
    TxKind("transfer_out", "debit", 0.13, 1_000, 150_000, False),
    TxKind("transfer_in", "credit", 0.12, 1_000, 150_000, False),
    TxKind("deposit", "credit", 0.13, 5_000, 300_000, False),
    TxKind("fee", "debit", 0.05, 100, 3_500, True),
    TxKind("interest", "credit", 0.05, 1, 5_000, True),
)
TX_KIND_WEIGHTS = tuple(k.weight for k in TX_KINDS)

MERCHANTS = (
    "TESCO STORES", "SAINSBURYS", "ASDA", "PRET A MANGER", "COSTA COFFEE", "AMAZON UK",
    "TFL TRAVEL", "BOOTS", "JOHN LEWIS", "SHELL", "DELIVEROO", "TRAINLINE", "ARGOS", "WAITROSE",
)  # fmt: skip
BILLERS = (
    "BRITISH GAS", "THAMES WATER", "COUNCIL TAX", "VODAFONE", "SKY UK", "OCTOPUS ENERGY",
    "AVIVA INSURANCE", "NETFLIX", "PURE GYM", "BT GROUP",
)  # fmt: skip


@lru_cache(maxsize=1)
def shared_faker() -> Faker:
    # Building a Faker is slow; one instance re-seeded every day is just as deterministic.
    return Faker("en_GB")


def day_rng(seed: int, day_number: int, stream: str) -> random.Random:
    # String seeds are hashed with SHA-512, so they do not depend on PYTHONHASHSEED.
    return random.Random(f"bankdw:{seed}:{day_number}:{stream}")


def generate_day(
    snapshot: Snapshot,
    *,
    scale: int,
    bad_rate: float,
    aml_cases: float = aml.DEFAULT_RATE,
    rates: Rates = RATES,
) -> DayChanges:
    """All changes of the day after `snapshot`; day 0 also opens the bank with `scale` customers.

    `aml_cases`: AML cases of each rule planted per 30 days per 1,000 customers (0: none).
    """
    return DayBuilder(
        snapshot, scale=scale, bad_rate=bad_rate, aml_cases=aml_cases, rates=rates
    ).build()


class DayBuilder:
    def __init__(
        self, snapshot: Snapshot, *, scale: int, bad_rate: float, aml_cases: float, rates: Rates
    ) -> None:
        state = snapshot.state
        self.snapshot = snapshot
        self.scale = scale
        self.bad_rate = bad_rate
        self.aml_cases = aml_cases
        self.rates = rates
        self.day_number = state.days_simulated
        self.today = state.start_date + timedelta(days=self.day_number)
        self.rng = day_rng(state.seed, self.day_number, "core")
        self.channel_rng = day_rng(state.seed, self.day_number, "channels")
        self.ledger_rng = day_rng(state.seed, self.day_number, "ledger")
        self.fake = shared_faker()
        self.fake.seed_instance(f"bankdw:{state.seed}:{self.day_number}:faker")
        self.next_customer_id = state.next_customer_id
        self.next_account_id = state.next_account_id
        self.next_transaction_id = state.next_transaction_id
        self.changes = DayChanges(day_number=self.day_number, day=self.today)
        self.customer_ids = [c.customer_id for c in snapshot.customers]
        self._names: dict[int, str] | None = None
        self.spoiled_accounts: list[int] = []  # opened today with a bad sort code or IBAN

    def build(self) -> DayChanges:
        if self.day_number == 0:
            self.open_the_bank()
        else:
            self.add_new_customers()
        self.change_customer_details()
        leaving = self.change_account_statuses()
        self.end_joint_holdings()
        booked_today = self.settle_pending()
        self.book_new_transactions(leaving, booked_today)
        staying = [
            a for a in self.snapshot.accounts if a.status == "open" and a.account_id not in leaving
        ]
        self.book_internal_transfers(staying)
        aml_state = self.plant_aml_cases(staying)
        self.changes.balance_changes = ledger.balance_changes(
            [*booked_today, *(t for t in self.changes.transactions if t.status == "booked")]
        )
        self.changes.feeds = self.generate_feeds()
        self.changes.next_state = SimState(
            seed=self.snapshot.state.seed,
            start_date=self.snapshot.state.start_date,
            days_simulated=self.day_number + 1,
            next_customer_id=self.next_customer_id,
            next_account_id=self.next_account_id,
            next_transaction_id=self.next_transaction_id,
            feed_state=self.changes.feeds.state.to_json(),
            aml_state=aml_state.to_json(),
        )
        return self.changes

    def moment(self) -> datetime:
        return random_moment(self.rng, self.today)

    # -- customers and accounts ---------------------------------------------------------------

    def open_the_bank(self) -> None:
        for product_id, name, category, rate, _share in PRODUCT_CATALOGUE:
            ts = self.moment()
            self.changes.products.append(
                ProductRow(product_id, name, category, Decimal(rate), ts, ts)
            )
        for _ in range(self.scale):
            customer = self.new_customer()
            # The bank existed before the simulation: day-0 accounts were opened years ago.
            for _ in range(2 if self.rng.random() < self.rates.second_account else 1):
                opened = self.today - timedelta(days=self.rng.randint(1, 3650))
                self.new_account(customer.customer_id, opened)
        self.spoil_new_accounts()
        self.open_ledgers(brought_forward=True)

    def add_new_customers(self) -> None:
        count = max(1, draw_count(self.rng, len(self.customer_ids) * self.rates.new_customers))
        for _ in range(count):
            customer = self.new_customer()
            self.new_account(customer.customer_id, self.today)
        self.spoil_new_accounts()
        self.open_ledgers(brought_forward=False)

    def new_customer(self) -> CustomerRow:
        fake, rng = self.fake, self.rng
        first, last = fake.first_name(), fake.last_name()
        ts = self.moment()
        row = CustomerRow(
            customer_id=self.next_customer_id,
            first_name=first,
            last_name=last,
            email=None if rng.random() < self.rates.missing_email else self.email_for(first, last),
            phone=None if rng.random() < self.rates.missing_phone else fake.phone_number(),
            # Not fake.date_of_birth(): that counts back from the real today.
            date_of_birth=self.today - timedelta(days=rng.randint(18 * 365 + 5, 90 * 365)),
            address_line1=fake.street_address(),
            city=fake.city(),
            postcode=fake.postcode(),
            country="GB",
            created_at=ts,
            updated_at=ts,
        )
        self.next_customer_id += 1
        self.changes.customers.append(row)
        self.customer_ids.append(row.customer_id)
        return row

    def email_for(self, first: str, last: str) -> str:
        local = re.sub(r"[^a-z.]", "", f"{first}.{last}".lower())
        return f"{local}{self.rng.randint(1, 999)}@{self.fake.free_email_domain()}"

    def new_account(self, customer_id: int, opened: date) -> AccountRow:
        rng = self.rng
        account_id = self.next_account_id
        self.next_account_id += 1
        sort_code = rng.choice(BRANCH_SORT_CODES)
        account_number = account_number_for(account_id, self.snapshot.state.seed)
        ts = self.moment()
        row = AccountRow(
            account_id=account_id,
            product_id=rng.choices(PRODUCT_IDS, PRODUCT_WEIGHTS)[0],
            sort_code=sort_code,
            account_number=account_number,
            iban=gb_iban(sort_code, account_number),
            currency=rng.choices(GOOD_CURRENCIES, self.rates.currency_weights)[0],
            status="open",
            opened_on=opened,
            closed_on=None,
            created_at=ts,
            updated_at=ts,
        )
        self.changes.accounts.append(row)
        holders = self.changes.account_holders
        holders.append(HolderRow(account_id, customer_id, "primary", opened, None, ts, ts))
        if rng.random() < self.rates.joint_account and len(self.customer_ids) > 1:
            joint = rng.choice(self.customer_ids)
            while joint == customer_id:
                joint = rng.choice(self.customer_ids)
            holders.append(HolderRow(account_id, joint, "joint", opened, None, ts, ts))
        return row

    def spoil_new_accounts(self) -> None:
        accounts = self.changes.accounts
        spoil = pick_bad_rows(self.rng, len(accounts), self.bad_rate, ACCOUNT_BAD_KINDS)
        for index, kind in spoil.items():
            row = accounts[index]
            if kind == "invalid_sort_code":
                accounts[index] = row._replace(
                    sort_code=malformed_sort_code(self.rng, row.sort_code)
                )
            else:
                accounts[index] = row._replace(iban=wrong_checksum_iban(self.rng, row.iban))
            self.changes.bad[kind] += 1
            self.spoiled_accounts.append(row.account_id)

    def open_ledgers(self, brought_forward: bool) -> None:
        """A ledger row for each account opened today: its opening deposit, or, for the
        accounts the bank already had on day 0, the balance their history brought forward."""
        category = {p[0]: p[2] for p in PRODUCT_CATALOGUE}
        for account in self.changes.accounts:
            opening = ledger.opening_balance(
                self.ledger_rng, category[account.product_id], brought_forward
            )
            self.changes.account_balances.append(ledger.balance_row(account, opening))

    def change_customer_details(self) -> None:
        customers = self.snapshot.customers
        if not customers:
            return
        updates: dict[int, dict[str, Any]] = {}
        movers = self.sample(customers, self.rates.address_change)
        for customer in movers:
            updates[customer.customer_id] = {
                "address_line1": self.fake.street_address(),
                "city": self.fake.city(),
                "postcode": self.fake.postcode(),
            }
        for customer in self.sample(customers, self.rates.email_change):
            new_email = self.email_for(customer.first_name, customer.last_name)
            updates.setdefault(customer.customer_id, {})["email"] = new_email
        for customer_id in sorted(updates):
            values = updates[customer_id]
            self.changes.customer_updates.append(
                CustomerUpdate(
                    customer_id=customer_id,
                    address_line1=values.get("address_line1"),
                    city=values.get("city"),
                    postcode=values.get("postcode"),
                    email=values.get("email"),
                    updated_at=self.moment(),
                )
            )

    def change_account_statuses(self) -> set[int]:
        """Make some accounts dormant or closed; returns the ids that stop transacting today."""
        open_accounts = [a for a in self.snapshot.accounts if a.status == "open"]
        dormant = self.sample(open_accounts, self.rates.becomes_dormant)
        dormant_ids = {a.account_id for a in dormant}
        closable = [
            a
            for a in self.snapshot.accounts
            if a.status in ("open", "dormant") and a.account_id not in dormant_ids
        ]
        closed = self.sample(closable, self.rates.becomes_closed)
        updates = [(a, "dormant", None) for a in dormant]
        updates += [(a, "closed", self.today) for a in closed]
        for account, status, closed_on in sorted(updates, key=lambda u: u[0].account_id):
            self.changes.account_updates.append(
                AccountStatusUpdate(account.account_id, status, closed_on, self.moment())
            )
        return dormant_ids | {a.account_id for a in closed}

    def end_joint_holdings(self) -> None:
        holdings = list(self.snapshot.joint_holdings)
        expected = len(self.snapshot.customers) * self.rates.joint_holder_leaves
        count = min(len(holdings), draw_count(self.rng, expected))
        for holding in sorted(self.rng.sample(holdings, count)):
            self.changes.holder_ends.append(
                HolderEnd(
                    holding.account_id,
                    holding.customer_id,
                    holding.valid_from,
                    valid_to=self.today,
                    updated_at=self.moment(),
                )
            )

    def sample(self, items: Sequence[Any], rate: float) -> list[Any]:
        count = min(len(items), draw_count(self.rng, len(items) * rate))
        return self.rng.sample(list(items), count)

    # -- transactions -------------------------------------------------------------------------

    def settle_pending(self) -> list[TransactionRow]:
        """Book or cancel pending transactions 1-3 days after they were made.

        Returns the transactions booked today, which a re-posted duplicate may copy.
        """
        booked = []
        for tx in self.snapshot.pending:
            age = (self.today - tx.transaction_date).days
            if age < 1:
                continue
            # 1/3 on day one, 1/2 of the rest on day two, all by day three: uniform over 1-3 days.
            if self.rng.random() >= (1.0 if age >= 3 else 1.0 / (4 - age)):
                continue
            if self.rng.random() < self.rates.booked_on_settlement:
                ts = self.moment()
                self.changes.settlements.append(Settlement(tx.transaction_id, self.today, ts))
                booked.append(
                    tx._replace(
                        status="booked", booking_date=self.today, updated_at=ts, booked_at=ts
                    )
                )
            else:
                self.changes.cancellations.append(tx.transaction_id)
        return booked

    def book_new_transactions(self, leaving: set[int], booked_today: list[TransactionRow]) -> None:
        currencies = self.account_currencies()
        new_rows = []
        for account_id, currency in currencies:
            if account_id in leaving:
                continue
            count = self.rng.choices(range(4), self.rates.transactions_per_account)[0]
            for _ in range(count):
                new_rows.append(self.new_transaction(account_id, currency))
        spoil = pick_bad_rows(self.rng, len(new_rows), self.bad_rate, TRANSACTION_BAD_KINDS)
        originals = booked_today + [
            row for i, row in enumerate(new_rows) if row.status == "booked" and i not in spoil
        ]
        duplicates = []
        for index, kind in spoil.items():
            if kind == "duplicate_transaction" and originals:
                duplicates.append(self.repost(self.rng.choice(originals)))
            else:
                kind = "non_positive_amount" if kind == "duplicate_transaction" else kind
                new_rows[index] = self.spoil_transaction(new_rows[index], kind)
            self.changes.bad[kind] += 1
        self.changes.transactions.extend(new_rows)
        self.changes.transactions.extend(duplicates)

    def account_currencies(self) -> list[tuple[int, str]]:
        """(account_id, currency) of the accounts open at the start of the day and opened today."""
        known = [(a.account_id, a.currency) for a in self.snapshot.accounts if a.status == "open"]
        return known + [(a.account_id, a.currency) for a in self.changes.accounts]

    def new_transaction(self, account_id: int, currency: str) -> TransactionRow:
        rng = self.rng
        kind = rng.choices(TX_KINDS, TX_KIND_WEIGHTS)[0]
        counterparty, description = self.describe(kind.name)
        ts = self.moment()
        transaction_id = self.next_transaction_id
        self.next_transaction_id += 1
        booked = kind.booked_at_once
        return TransactionRow(
            transaction_id=transaction_id,
            account_id=account_id,
            reference=f"TX{rng.getrandbits(64):016X}",
            transaction_type=kind.name,
            direction=kind.direction,
            amount=self.amount_for(kind),
            currency=currency,
            status="booked" if booked else "pending",
            transaction_date=self.today,
            booking_date=self.today if booked else None,
            counterparty=counterparty,
            description=description,
            created_at=ts,
            updated_at=ts,
            channel=payments.channel_for(self.channel_rng, kind.name, description),
            merchant_category=payments.merchant_category_for(kind.name, counterparty),
            counterparty_account_id=None,
            counterparty_transaction_id=None,
            booked_at=ts if booked else None,
        )

    def amount_for(self, kind: TxKind) -> Decimal:
        rng = self.rng
        if not kind.booked_at_once and rng.random() < self.rates.large_amount:
            pence = rng.randint(100_000, 500_000)
        else:
            # Log-uniform: many small amounts, a few near the top of the range.
            pence = round(
                math.exp(rng.uniform(math.log(kind.low_pence), math.log(kind.high_pence)))
            )
        return Decimal(max(pence, 1)).scaleb(-2)

    def describe(self, kind: str) -> tuple[str | None, str]:
        rng = self.rng
        if kind == "card_payment":
            merchant = rng.choice(MERCHANTS)
            return merchant, f"CARD PAYMENT TO {merchant}"
        if kind == "direct_debit":
            biller = rng.choice(BILLERS)
            return biller, f"DIRECT DEBIT {biller}"
        if kind in ("transfer_in", "transfer_out"):
            name = self.fake.name()
            return (
                name,
                f"FASTER PAYMENT {'FROM' if kind == 'transfer_in' else 'TO'} {name.upper()}",
            )
        if kind == "deposit":
            return None, rng.choice(("CASH DEPOSIT", "CHEQUE DEPOSIT", "SALARY"))
        if kind == "fee":
            return None, rng.choice(("MONTHLY ACCOUNT FEE", "OVERDRAFT FEE", "NON-STERLING FEE"))
        return None, "INTEREST PAID"

    def spoil_transaction(self, row: TransactionRow, kind: str) -> TransactionRow:
        """A syntactically valid but wrong row; booked, so it reaches the warehouse's checks."""
        booked = row._replace(status="booked", booking_date=self.today, booked_at=row.created_at)
        if kind == "non_positive_amount":
            return booked._replace(amount=self.rng.choice((-row.amount, Decimal("0.00"))))
        if kind == "unknown_currency":
            return booked._replace(currency=self.rng.choice(BAD_CURRENCIES))
        if kind == "future_booking_date":
            return booked._replace(booking_date=self.today + timedelta(self.rng.randint(30, 400)))
        raise ValueError(f"unknown transaction defect {kind!r}")

    def repost(self, original: TransactionRow) -> TransactionRow:
        """The same payment posted a second time: a new id, everything else copied."""
        ts = self.moment()
        transaction_id = self.next_transaction_id
        self.next_transaction_id += 1
        return original._replace(
            transaction_id=transaction_id, created_at=ts, updated_at=ts, booked_at=ts
        )

    # -- transfers between accounts, planted AML cases -----------------------------------------

    def names(self) -> dict[int, str]:
        """Customer id -> name, as an internal transfer names the other side."""
        if self._names is None:
            self._names = {
                c.customer_id: f"{c.first_name} {c.last_name}".upper()
                for c in self.snapshot.customers
            }
        return self._names

    def book_internal_transfers(self, accounts: list[AccountRef]) -> None:
        rows = payments.internal_transfers(
            day_rng(self.snapshot.state.seed, self.day_number, "transfers"),
            self.today,
            accounts,
            self.names(),
            self.rates.internal_transfer,
            self.next_transaction_id,
        )
        self.next_transaction_id += len(rows)
        self.changes.transactions.extend(rows)
        self.changes.internal_transfers = len(rows) // 2

    def plant_aml_cases(self, accounts: list[AccountRef]) -> aml.AmlState:
        state = self.snapshot.state
        day = aml.plant_cases(
            day_rng(state.seed, self.day_number, "aml"),
            today=self.today,
            day_number=self.day_number,
            accounts=accounts,
            balances=self.snapshot.balances,
            names=self.names(),
            customers=len(self.snapshot.customers),
            rate=self.aml_cases,
            state=aml.AmlState.from_json(state.aml_state),
            next_id=self.next_transaction_id,
            spoiled=self.spoiled_accounts,
        )
        self.next_transaction_id += len(day.transactions)
        self.changes.transactions.extend(day.transactions)
        self.changes.aml_cases.extend(day.cases)
        return day.state

    # -- feeds --------------------------------------------------------------------------------

    def generate_feeds(self) -> FeedDay:
        state = self.snapshot.state
        return generate_feeds(
            day_rng(state.seed, self.day_number, "feeds"),
            self.today,
            self.customer_ids,
            [(p[0], p[2]) for p in PRODUCT_CATALOGUE],
            FeedState.from_json(state.feed_state),
            bad_rate=self.bad_rate,
            rates=self.rates.feeds,
        )


def account_number_for(account_id: int, seed: int) -> str:
    """8 digits, unique per account: an affine bijection on 0..10^8-1 (the factor is coprime)."""
    return f"{(account_id * 48_271 + seed * 7_919) % 100_000_000:08d}"


def gb_iban(sort_code: str, account_number: str) -> str:
    return schwifty.IBAN.generate(
        "GB",
        bank_code=BANK_CODE,
        branch_code=sort_code.replace("-", ""),
        account_code=account_number,
    ).compact


def malformed_sort_code(rng: random.Random, sort_code: str) -> str:
    digits = sort_code.replace("-", "")
    return rng.choice(
        (
            f"{digits[:2]}-{digits[2:5]}-{digits[5]}",  # hyphen in the wrong place
            digits + str(rng.randint(0, 9)),  # seven digits, no hyphens
            f"{digits[:2]}-{digits[2:4]}-{digits[4]}",  # a digit short
        )
    )


def wrong_checksum_iban(rng: random.Random, iban: str) -> str:
    # Check digits are unique per BBAN (98 - n mod 97), so any other pair breaks the checksum.
    good = int(iban[2:4])
    bad = rng.choice([n for n in range(2, 99) if n != good])
    return f"{iban[:2]}{bad:02d}{iban[4:]}"
