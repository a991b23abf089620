"""The rows the simulator writes and the state it carries from day to day.

Plain named tuples and frozen dataclasses, shared by the generator (which computes them), the
concern modules (ledger, payments, aml) and the writer (which applies them). A row's fields are
its table's columns: the writer copies them by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from flows.simulate.feeds import FeedDay

FIRST_CUSTOMER_ID = 1
FIRST_ACCOUNT_ID = 10_000_001  # a different range from customers, so a wrong join finds nothing
FIRST_TRANSACTION_ID = 1


class ProductRow(NamedTuple):
    product_id: str
    name: str
    category: str
    interest_rate: Decimal
    created_at: datetime
    updated_at: datetime


class CustomerRow(NamedTuple):
    customer_id: int
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    date_of_birth: date
    address_line1: str
    city: str
    postcode: str
    country: str
    created_at: datetime
    updated_at: datetime


class AccountRow(NamedTuple):
    account_id: int
    product_id: str
    sort_code: str
    account_number: str
    iban: str
    currency: str
    status: str
    opened_on: date
    closed_on: date | None
    created_at: datetime
    updated_at: datetime


class HolderRow(NamedTuple):
    account_id: int
    customer_id: int
    holder_role: str
    valid_from: date
    valid_to: date | None
    created_at: datetime
    updated_at: datetime


class TransactionRow(NamedTuple):
    transaction_id: int
    account_id: int
    reference: str
    transaction_type: str
    direction: str
    amount: Decimal
    currency: str
    status: str
    transaction_date: date
    booking_date: date | None
    counterparty: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    channel: str
    merchant_category: str | None  # card payments only
    counterparty_account_id: int | None  # internal transfers: the other leg's account
    counterparty_transaction_id: int | None  # internal transfers: the other leg
    booked_at: datetime | None  # None while pending


class BalanceRow(NamedTuple):
    """An account's ledger row, written when the account opens."""

    account_id: int
    currency: str
    opening_balance: Decimal
    balance: Decimal
    booked_transactions: int
    created_at: datetime
    updated_at: datetime


class BalanceChange(NamedTuple):
    """What the day's bookings do to one account's ledger row."""

    account_id: int
    amount: Decimal  # signed: credits add, debits subtract
    bookings: int
    last_booked_at: datetime


class AmlCaseRow(NamedTuple):
    """A planted AML case, written once its last transaction is booked (sim_aml_cases)."""

    case_id: int
    rule: str
    variant: str | None  # velocity: count or amount; the other rules have none
    account_id: int
    customer_id: int
    window_start: datetime
    window_end: datetime
    transaction_ids: list[int]
    planted_on: date


class CustomerUpdate(NamedTuple):
    """New values for a customer; None leaves a column as it is."""

    customer_id: int
    address_line1: str | None
    city: str | None
    postcode: str | None
    email: str | None
    updated_at: datetime


class AccountStatusUpdate(NamedTuple):
    account_id: int
    status: str
    closed_on: date | None
    updated_at: datetime


class HolderEnd(NamedTuple):
    account_id: int
    customer_id: int
    valid_from: date
    valid_to: date
    updated_at: datetime


class Settlement(NamedTuple):
    transaction_id: int
    booking_date: date
    updated_at: datetime  # also the instant it is booked (booked_at)


class CustomerRef(NamedTuple):
    customer_id: int
    first_name: str
    last_name: str


class AccountRef(NamedTuple):
    account_id: int
    status: str
    currency: str
    opened_on: date
    customer_id: int | None  # the primary holder


class JointHolding(NamedTuple):
    account_id: int
    customer_id: int
    valid_from: date


@dataclass(frozen=True)
class SimState:
    seed: int
    start_date: date
    days_simulated: int
    next_customer_id: int = FIRST_CUSTOMER_ID
    next_account_id: int = FIRST_ACCOUNT_ID
    next_transaction_id: int = FIRST_TRANSACTION_ID
    feed_state: dict[str, Any] = field(default_factory=dict)
    aml_state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """The source at the start of a day, each list in key order."""

    state: SimState
    customers: Sequence[CustomerRef] = ()
    accounts: Sequence[AccountRef] = ()
    joint_holdings: Sequence[JointHolding] = ()
    pending: Sequence[TransactionRow] = ()
    balances: Mapping[int, Decimal] = field(default_factory=dict)  # account_id -> ledger balance


@dataclass
class DayChanges:
    day_number: int
    day: date
    products: list[ProductRow] = field(default_factory=list)
    customers: list[CustomerRow] = field(default_factory=list)
    accounts: list[AccountRow] = field(default_factory=list)
    account_holders: list[HolderRow] = field(default_factory=list)
    account_balances: list[BalanceRow] = field(default_factory=list)
    transactions: list[TransactionRow] = field(default_factory=list)
    customer_updates: list[CustomerUpdate] = field(default_factory=list)
    account_updates: list[AccountStatusUpdate] = field(default_factory=list)
    holder_ends: list[HolderEnd] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    cancellations: list[int] = field(default_factory=list)
    balance_changes: list[BalanceChange] = field(default_factory=list)
    aml_cases: list[AmlCaseRow] = field(default_factory=list)
    internal_transfers: int = 0  # transfers between the bank's accounts (two rows each)
    bad: Counter[str] = field(default_factory=Counter)
    feeds: FeedDay | None = None
    next_state: SimState | None = None

    def inserted(self) -> dict[str, int]:
        return {
            "products": len(self.products),
            "customers": len(self.customers),
            "accounts": len(self.accounts),
            "account_holders": len(self.account_holders),
            "account_balances": len(self.account_balances),
            "transactions": len(self.transactions),
        }

    def updated(self) -> dict[str, int]:
        return {
            "customers": len(self.customer_updates),
            "accounts": len(self.account_updates),
            "account_holders": len(self.holder_ends),
            "account_balances": len(self.balance_changes),
            "transactions": len(self.settlements),
        }

    def deleted(self) -> dict[str, int]:
        return {"transactions": len(self.cancellations)}
