"""The core bank's own ledger: a balance per account, kept as transactions book.

`account_balances` holds one row per account: the balance it opened with, and the running
balance `opening_balance + booked credits - booked debits`, in the account's currency. What counts
is what the source booked (`status = 'booked'`): a pending transaction is not in the balance until
it books, a cancelled one (deleted while pending) never was, and a bad record the source booked
anyway (a re-posted duplicate, a non-positive amount, an unknown currency label, a booking date in
the future) moves the balance as booked, sign by `direction`, amount as it stands. A warehouse that
holds such rows back differs from the source's balance by exactly those rows.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from flows.simulate.rows import AccountRow, BalanceChange, BalanceRow, TransactionRow

# Opening balance in pence, by product category: (low, high, sign). Accounts the bank had on
# day 0 bring their balance forward from years of history; accounts opened during the simulation
# open with a deposit. Lenders' accounts open owing money (negative), never above zero.
BROUGHT_FORWARD = {
    "current": (1_000, 800_000, 1),
    "savings": (10_000, 15_000_000, 1),
    "credit_card": (100, 250_000, -1),
    "loan": (100_000, 2_500_000, -1),
}
OPENING_DEPOSIT = {
    "current": (1_000, 250_000, 1),
    # Below 10,000 GBP: an ordinary opening deposit never looks like a high-value new account.
    "savings": (10_000, 900_000, 1),
    "credit_card": (0, 0, 1),
    "loan": (100_000, 1_500_000, -1),
}


def opening_balance(rng: random.Random, category: str, brought_forward: bool) -> Decimal:
    low, high, sign = (BROUGHT_FORWARD if brought_forward else OPENING_DEPOSIT)[category]
    if high == 0:
        return Decimal("0.00")
    # Log-uniform, like the transaction amounts: many small balances, a few large ones.
    pence = round(math.exp(rng.uniform(math.log(low), math.log(high))))
    return Decimal(sign * pence).scaleb(-2)


def balance_row(account: AccountRow, opening: Decimal) -> BalanceRow:
    return BalanceRow(
        account_id=account.account_id,
        currency=account.currency,
        opening_balance=opening,
        balance=opening,
        booked_transactions=0,
        created_at=account.created_at,
        updated_at=account.created_at,
    )


def signed(row: TransactionRow) -> Decimal:
    """The amount as the ledger books it: credits add, anything else subtracts."""
    return row.amount if row.direction == "credit" else -row.amount


def balance_changes(booked: Iterable[TransactionRow]) -> list[BalanceChange]:
    """What the day's bookings do to each account's balance, in account order.

    `booked` is every transaction that booked today: settled pending ones and new rows booked at
    once (each with its `booked_at`).
    """
    totals: dict[int, tuple[Decimal, int, datetime]] = {}
    for row in booked:
        assert row.status == "booked" and row.booked_at is not None, row
        amount, count, last = totals.get(row.account_id, (Decimal("0.00"), 0, row.booked_at))
        totals[row.account_id] = (amount + signed(row), count + 1, max(last, row.booked_at))
    return [
        BalanceChange(account_id, amount, count, last)
        for account_id, (amount, count, last) in sorted(totals.items())
    ]
