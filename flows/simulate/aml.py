"""Planted AML cases: transactions that clearly meet one monitoring rule each, with their ids in
`sim_aml_cases`, so that the warehouse's alerting can be measured (recall, false alerts).

The rules, as the later alerting implements them (thresholds become its settings). All look at
booked transactions (`status = 'booked'`) of one account, time windows by `booked_at`, amounts in
GBP (cases are planted on GBP accounts only):

- structuring: 3 or more cash deposits (`transaction_type = 'deposit'` and
  `description = 'CASH DEPOSIT'`) of 9,000 to 9,999.99 within 7 days;
- velocity: more than 10 debits within one hour (variant `count`), or more than 50,000 of debits
  within 24 hours (variant `amount`);
- pass_through: a credit of at least 5,000, then debits of at least 90 % of it within 48 hours;
- new_account_high_value: a single credit of at least 10,000 booked within 30 days of the
  account's `opened_on`;
- fan_in: 5 or more distinct accounts of the bank credit one account by internal transfer
  (`counterparty_account_id` set) within 72 hours, then debits of at least 80 % of those credits
  leave it within 72 hours of the last one (AMLSim's fan-in typology);
- fan_out, its mirror image: a credit of at least 5,000, then internal transfers from the account
  to 5 or more distinct accounts of the bank within 72 hours after it, totalling at least 80 % of
  it (AMLSim's fan-out typology). The two are one network rule in the issue; they are planted and
  recorded apart so that each has its own recall.

Each case meets its rule by a clear margin and no other rule; ordinary behaviour stays far below
every threshold (no ordinary credit or debit reaches 5,000, nobody books 10 debits a day).
A case may span days (structuring over up to 7): its legs wait in `sim_state.aml_state`, and its
row is written on the day its last leg books, which is also the first moment it meets its rule.
So every row of `sim_aml_cases` is complete, and a case still in progress meets no rule yet.
An account that turns dormant or closed stops transacting that day, planted legs included: a
case with a leg due on such an account is abandoned (kept in the state with the transactions it
booked, never recorded in `sim_aml_cases`), and those transactions stay as they are, short of its
rule (each case's last leg is the one that meets it).

Generation is pure: an rng of its own, the day, the accounts and the carried state in; rows, case
records and the next state out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flows.simulate.aml_plans import Planner
from flows.simulate.payments import reference, transfer_legs
from flows.simulate.rows import AccountRef, AmlCaseRow, TransactionRow

RULES = (
    "structuring",
    "velocity",
    "pass_through",
    "new_account_high_value",
    "fan_in",
    "fan_out",
)
DEFAULT_RATE = 5.0  # SIM_AML_CASES
CASE_WINDOW_DAYS = 30  # a rate of N means N cases of each rule per 30 days per 1,000 customers
RATE_CUSTOMERS = 1_000
MAX_OWED = 3.0  # cases owed while no account fits; beyond that they are dropped, not bunched


@dataclass
class AmlState:
    """What the planter carries from day to day (in `sim_state.aml_state`, as JSON)."""

    next_case_id: int = 1
    # Cases owed per rule, fractional: a steady rate, staggered so rules fall on different days.
    owed: dict[str, float] = field(
        default_factory=lambda: {rule: i / len(RULES) for i, rule in enumerate(RULES)}
    )
    planted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    # Cases whose account turned dormant or closed before their last leg (see above).
    # {case_id, rule, transaction_ids}: what they booked is neither ordinary nor a case.
    abandoned: list[dict[str, Any]] = field(default_factory=list)
    reserved: dict[str, int] = field(default_factory=dict)  # account id -> last day number
    # Accounts opened with a bad sort code or IBAN: the warehouse holds back their transactions
    # (silver's account_invalid), so a case planted on one could never be alerted.
    held: list[int] = field(default_factory=list)
    open_cases: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AmlState:
        # A deep copy: the caller's snapshot must never change under it.
        return cls(**json.loads(json.dumps(data))) if data else cls()

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


@dataclass
class AmlDay:
    transactions: list[TransactionRow]
    cases: list[AmlCaseRow]
    state: AmlState


def plant_cases(
    rng: random.Random,
    *,
    today: date,
    day_number: int,
    accounts: Sequence[AccountRef],
    balances: Mapping[int, Decimal],
    names: Mapping[int, str],
    customers: int,
    rate: float,
    state: AmlState,
    next_id: int,
    spoiled: Sequence[int] = (),
) -> AmlDay:
    """The day's planted transactions and the cases they complete.

    `accounts`: the accounts open all day, in key order; `balances`: their ledger balances at the
    start of the day; `names`: customer id -> name; `rate`: cases of each rule per 30 days per
    1,000 customers (0 plants none; cases already under way still finish); `spoiled`: accounts
    opened today with a bad sort code or IBAN, never used by a case.
    """
    state = AmlState.from_json(state.to_json())
    state.held = sorted({*state.held, *spoiled})
    state.reserved = {k: v for k, v in state.reserved.items() if v >= day_number}
    planner = Planner(rng, today, day_number, accounts, balances, state)
    for rule in RULES:
        owed = state.owed.get(rule, 0.0) + rate / CASE_WINDOW_DAYS * customers / RATE_CUSTOMERS
        while owed >= 1 and planner.plan(rule):
            owed -= 1
        state.owed[rule] = min(owed, MAX_OWED)
    transactions: list[TransactionRow] = []
    cases: list[AmlCaseRow] = []
    still_open = []
    open_all_day = {a.account_id for a in accounts}
    for case in state.open_cases:
        due = [leg for leg in case["legs"] if datetime.fromisoformat(leg["at"]).date() <= today]
        if any(account not in open_all_day for leg in due for account in touched_by(leg)):
            state.abandoned.append({k: case[k] for k in ("case_id", "rule", "transaction_ids")})
            continue
        case["legs"] = case["legs"][len(due) :]
        for leg in due:
            rows = leg_rows(rng, leg, next_id + len(transactions), names)
            transactions.extend(rows)
            case["transaction_ids"].extend(row.transaction_id for row in rows)
        if case["legs"]:
            still_open.append(case)
        else:
            cases.append(case_row(case))
    state.open_cases = still_open
    return AmlDay(transactions, cases, state)


def touched_by(leg: dict[str, Any]) -> tuple[int, ...]:
    """The accounts a planned leg books on (both for an internal transfer)."""
    return (leg["account_id"], leg["payee"]) if leg["type"] == "internal" else (leg["account_id"],)


def case_row(case: dict[str, Any]) -> AmlCaseRow:
    return AmlCaseRow(
        case_id=case["case_id"],
        rule=case["rule"],
        variant=case["variant"],
        account_id=case["account_id"],
        customer_id=case["customer_id"],
        window_start=datetime.fromisoformat(case["window_start"]),
        window_end=datetime.fromisoformat(case["window_end"]),
        transaction_ids=list(case["transaction_ids"]),
        planted_on=date.fromisoformat(case["planted_on"]),
    )


def leg_rows(
    rng: random.Random, leg: dict[str, Any], transaction_id: int, names: Mapping[int, str]
) -> list[TransactionRow]:
    """The rows of one planned leg: one transaction, or both legs of an internal transfer.
    Booked at once, at the planned instant (created = booked), so windows hold by construction."""
    at = datetime.fromisoformat(leg["at"])
    amount = Decimal(leg["amount"])
    if leg["type"] == "internal":
        payer = AccountRef(leg["account_id"], "open", "GBP", at.date(), leg["customer_id"])
        payee = AccountRef(leg["payee"], "open", "GBP", at.date(), leg["payee_customer_id"])
        return list(
            transfer_legs(
                debit_id=transaction_id,
                payer=payer,
                payee=payee,
                amount=amount,
                at=at,
                channel=leg["channel"],
                references=(reference(rng), reference(rng)),
                names=names,
            )
        )
    return [
        TransactionRow(
            transaction_id=transaction_id,
            account_id=leg["account_id"],
            reference=reference(rng),
            transaction_type=leg["type"],
            direction=leg["direction"],
            amount=amount,
            currency="GBP",
            status="booked",
            transaction_date=at.date(),
            booking_date=at.date(),
            counterparty=leg["counterparty"],
            description=leg["description"],
            created_at=at,
            updated_at=at,
            channel=leg["channel"],
            merchant_category=leg.get("merchant_category"),
            counterparty_account_id=None,
            counterparty_transaction_id=None,
            booked_at=at,
        )
    ]
