"""How money moves: the channel of every transaction, the merchant category of card payments,
and transfers between the bank's own accounts.

Each draw here comes from a random stream of its own (not the core stream the generator has
always used), so adding them left every existing column of every ordinary row as it was.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

from flows.simulate.feeds import draw_count, moment
from flows.simulate.rows import AccountRef, TransactionRow

# Where a transaction was made. `system`: posted without the customer acting at the bank
# (fees, interest, direct debits collected by Bacs, payments arriving from other banks, salaries).
CHANNELS = ("branch", "atm", "online", "mobile", "card", "system")

# Card payments only: the merchant's category, an MCC group (ISO 18245 code in the comment).
MERCHANT_CATEGORY = {
    "TESCO STORES": "groceries",  # 5411 grocery stores, supermarkets
    "SAINSBURYS": "groceries",
    "ASDA": "groceries",
    "WAITROSE": "groceries",
    "PRET A MANGER": "restaurants",  # 5812 eating places, 5814 fast food
    "COSTA COFFEE": "restaurants",
    "DELIVEROO": "restaurants",
    "TFL TRAVEL": "travel",  # 4111 local commuter transport, 4112 passenger railways
    "TRAINLINE": "travel",
    "SHELL": "fuel",  # 5541 service stations
    "AMAZON UK": "retail",  # 5311 department stores, 5399 general merchandise
    "JOHN LEWIS": "retail",
    "ARGOS": "retail",
    "BOOTS": "health",  # 5912 drug stores and pharmacies
}

# Customers pay with their own hands: online banking, the app, or at a branch counter.
CUSTOMER_CHANNELS = ("online", "mobile", "branch")
CUSTOMER_CHANNEL_WEIGHTS = (0.45, 0.45, 0.10)


def channel_for(rng: random.Random, transaction_type: str, description: str | None) -> str:
    """The channel of an ordinary transaction, given what it is."""
    if transaction_type == "card_payment":
        return "card"
    if transaction_type == "transfer_out":
        return rng.choices(CUSTOMER_CHANNELS, CUSTOMER_CHANNEL_WEIGHTS)[0]
    if transaction_type == "deposit" and description == "CASH DEPOSIT":
        return rng.choice(("branch", "atm"))  # cash goes in at a counter or a machine
    if transaction_type == "deposit" and description == "CHEQUE DEPOSIT":
        return rng.choice(("branch", "mobile"))  # paid in at a counter, or imaged in the app
    return "system"


def merchant_category_for(transaction_type: str, counterparty: str | None) -> str | None:
    if transaction_type != "card_payment" or counterparty is None:
        return None
    return MERCHANT_CATEGORY[counterparty]


def pence_between(rng: random.Random, low: int, high: int) -> Decimal:
    """Log-uniform, as the other amounts: many small transfers, a few near the top."""
    return Decimal(round(math.exp(rng.uniform(math.log(low), math.log(high))))).scaleb(-2)


def transfer_legs(
    *,
    debit_id: int,
    payer: AccountRef,
    payee: AccountRef,
    amount: Decimal,
    at: datetime,
    channel: str,
    references: tuple[str, str],
    names: Mapping[int, str],
) -> tuple[TransactionRow, TransactionRow]:
    """An internal transfer: a debit on the payer and a credit on the payee, booked at once
    (money moves inside the bank) at the same instant, each naming the other's account and row.

    The legs carry references of their own: one reference on two rows is how the warehouse
    recognises a re-posted duplicate.
    """
    credit_id = debit_id + 1
    own = payer.customer_id == payee.customer_id
    to_name = names.get(payee.customer_id or 0, "ACCOUNT HOLDER")
    from_name = names.get(payer.customer_id or 0, "ACCOUNT HOLDER")
    common = {
        "currency": payer.currency,
        "amount": amount,
        "status": "booked",
        "transaction_date": at.date(),
        "booking_date": at.date(),
        "created_at": at,
        "updated_at": at,
        "booked_at": at,
        "channel": channel,
        "merchant_category": None,
    }
    debit = TransactionRow(
        transaction_id=debit_id,
        account_id=payer.account_id,
        reference=references[0],
        transaction_type="transfer_out",
        direction="debit",
        counterparty=to_name,
        description="TRANSFER TO OWN ACCOUNT" if own else f"INTERNAL TRANSFER TO {to_name}",
        counterparty_account_id=payee.account_id,
        counterparty_transaction_id=credit_id,
        **common,
    )
    credit = TransactionRow(
        transaction_id=credit_id,
        account_id=payee.account_id,
        reference=references[1],
        transaction_type="transfer_in",
        direction="credit",
        counterparty=from_name,
        description="TRANSFER FROM OWN ACCOUNT" if own else f"INTERNAL TRANSFER FROM {from_name}",
        counterparty_account_id=payer.account_id,
        counterparty_transaction_id=debit_id,
        **common,
    )
    return debit, credit


def reference(rng: random.Random) -> str:
    return f"TX{rng.getrandbits(64):016X}"


def internal_transfers(
    rng: random.Random,
    today: date,
    accounts: Sequence[AccountRef],
    names: Mapping[int, str],
    rate: float,
    next_id: int,
) -> list[TransactionRow]:
    """The day's ordinary transfers between the bank's accounts (two rows each).

    About `rate` of the `accounts` (open, in key order) pay once; half of the payers who hold
    another account in the same currency move money to it, the others pay a random customer of
    the bank in their currency. Amounts stay small (10 to 2,000), far below any AML threshold,
    and payees are spread over every account, so no account collects many payers by chance.
    """
    by_currency: dict[str, list[AccountRef]] = defaultdict(list)
    by_holder: dict[tuple[int | None, str], list[AccountRef]] = defaultdict(list)
    for account in accounts:
        by_currency[account.currency].append(account)
        by_holder[(account.customer_id, account.currency)].append(account)
    count = min(len(accounts), draw_count(rng, len(accounts) * rate))
    rows: list[TransactionRow] = []
    for payer in rng.sample(list(accounts), count):
        own = [
            a
            for a in by_holder[(payer.customer_id, payer.currency)]
            if a.account_id != payer.account_id
        ]
        if own and rng.random() < 0.5:
            payee = rng.choice(own)
        else:
            others = by_currency[payer.currency]
            if len(others) < 2:
                continue
            payee = rng.choice(others)
            while payee.account_id == payer.account_id:
                payee = rng.choice(others)
        rows.extend(
            transfer_legs(
                debit_id=next_id + len(rows),
                payer=payer,
                payee=payee,
                amount=pence_between(rng, 1_000, 200_000),
                at=moment(rng, today),
                channel=rng.choices(CUSTOMER_CHANNELS, CUSTOMER_CHANNEL_WEIGHTS)[0],
                references=(reference(rng), reference(rng)),
                names=names,
            )
        )
    return rows
