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
  leave it within 72 hours of the last one (AMLSim's fan-in typology).

Each case meets its rule by a clear margin and no other rule; ordinary behaviour stays far below
every threshold (no ordinary credit or debit reaches 5,000, nobody books 10 debits a day).
A case may span days (structuring over up to 7): its legs wait in `sim_state.aml_state`, and its
row is written on the day its last leg books, which is also the first moment it meets its rule.
So every row of `sim_aml_cases` is complete, and a case still in progress meets no rule yet.

Generation is pure: an rng of its own, the day, the accounts and the carried state in; rows, case
records and the next state out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from flows.simulate.payments import reference, transfer_legs
from flows.simulate.rows import AccountRef, AmlCaseRow, TransactionRow

RULES = ("structuring", "velocity", "pass_through", "new_account_high_value", "fan_in")
DEFAULT_RATE = 5.0  # SIM_AML_CASES
CASE_WINDOW_DAYS = 30  # a rate of N means N cases of each rule per 30 days per 1,000 customers
RATE_CUSTOMERS = 1_000
MAX_OWED = 3.0  # cases owed while no account fits; beyond that they are dropped, not bunched
ESTABLISHED_DAYS = 45  # cases other than the new-account one use accounts opened this long ago
NEW_ACCOUNT_DAYS = 20  # the new-account case uses accounts opened at most this many days ago
RESERVED_DAYS = 30  # an account used by a case stays out of other cases this long after it
HOUR = 3_600
DAY = 86_400

# Who sends money in and where it goes: payers and payees outside the bank.
EXTERNAL_PARTIES = (
    "A. NOWAK", "K. MENSAH", "R. SILVA", "T. IVANOV", "L. CHEN", "D. MURPHY", "S. HASSAN",
    "P. KOWALSKI", "NORTHGATE TRADING LTD", "BLUE HARBOUR LOGISTICS LTD", "CITYLINE MOTORS LTD",
    "ORION CONSULTING LTD",
)  # fmt: skip
ONLINE_SHOPS = ("AMAZON UK", "ARGOS", "JOHN LEWIS")

# A planned case: the account the rule fires on, the legs, and the other accounts it involves.
Planned = tuple[AccountRef, list[dict[str, Any]], list[AccountRef]] | None


@dataclass
class AmlState:
    """What the planter carries from day to day (in `sim_state.aml_state`, as JSON)."""

    next_case_id: int = 1
    # Cases owed per rule, fractional: a steady rate, staggered so rules fall on different days.
    owed: dict[str, float] = field(
        default_factory=lambda: {rule: i / len(RULES) for i, rule in enumerate(RULES)}
    )
    planted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    reserved: dict[str, int] = field(default_factory=dict)  # account id -> last day number
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
) -> AmlDay:
    """The day's planted transactions and the cases they complete.

    `accounts`: the accounts open all day, in key order; `balances`: their ledger balances at the
    start of the day; `names`: customer id -> name; `rate`: cases of each rule per 30 days per
    1,000 customers (0 plants none; cases already under way still finish).
    """
    state = AmlState.from_json(state.to_json())
    state.reserved = {k: v for k, v in state.reserved.items() if v >= day_number}
    planner = Planner(rng, today, day_number, accounts, balances, state)
    for rule in RULES:
        owed = state.owed[rule] + rate / CASE_WINDOW_DAYS * customers / RATE_CUSTOMERS
        while owed >= 1 and planner.plan(rule):
            owed -= 1
        state.owed[rule] = min(owed, MAX_OWED)
    transactions: list[TransactionRow] = []
    cases: list[AmlCaseRow] = []
    still_open = []
    for case in state.open_cases:
        due = [leg for leg in case["legs"] if datetime.fromisoformat(leg["at"]).date() <= today]
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


class Planner:
    """Chooses accounts and plans the legs of new cases, appending them to the state."""

    def __init__(
        self,
        rng: random.Random,
        today: date,
        day_number: int,
        accounts: Sequence[AccountRef],
        balances: Mapping[int, Decimal],
        state: AmlState,
    ) -> None:
        self.rng = rng
        self.today = today
        self.day_number = day_number
        self.midnight = datetime.combine(today, time(), UTC)
        self.balances = balances
        self.state = state
        # GBP accounts with a primary holder; the ones in a recent case are left alone.
        self.accounts = [
            a
            for a in accounts
            if a.currency == "GBP" and a.customer_id is not None and a.status == "open"
        ]

    def free(self, *, established: bool, min_balance: Decimal = Decimal(0)) -> list[AccountRef]:
        def fits(a: AccountRef) -> bool:
            age = (self.today - a.opened_on).days
            old_enough = age >= ESTABLISHED_DAYS if established else 0 <= age <= NEW_ACCOUNT_DAYS
            return (
                old_enough
                and str(a.account_id) not in self.state.reserved
                and self.balances.get(a.account_id, Decimal(0)) >= min_balance
            )

        return [a for a in self.accounts if fits(a)]

    def plan(self, rule: str) -> bool:
        """Plan one case of `rule` starting today; False when no account fits."""
        variant = None
        method = f"plan_{rule}"
        if rule == "velocity":  # the two ways to meet it, in turn
            variant = ("count", "amount")[self.state.planted[rule] % 2]
            method = f"{method}_{variant}"
        planned = getattr(self, method)()
        if planned is None:
            return False
        account, legs, others = planned
        legs.sort(key=lambda leg: leg["at"])
        case_id = self.state.next_case_id
        self.state.next_case_id += 1
        self.state.planted[rule] += 1
        last = datetime.fromisoformat(legs[-1]["at"]).date()
        last_day = self.day_number + (last - self.today).days
        for reserved in (account, *others):
            self.state.reserved[str(reserved.account_id)] = last_day + RESERVED_DAYS
        self.state.open_cases.append(
            {
                "case_id": case_id,
                "rule": rule,
                "variant": variant,
                "account_id": account.account_id,
                "customer_id": account.customer_id,
                "window_start": legs[0]["at"],
                "window_end": legs[-1]["at"],
                "planted_on": self.today.isoformat(),
                "legs": legs,
                "transaction_ids": [],
            }
        )
        return True

    # -- helpers ----------------------------------------------------------------------------

    def at(self, seconds: int) -> str:
        """An instant `seconds` after today's midnight (UTC), as the state stores it."""
        return (self.midnight + timedelta(seconds=seconds)).isoformat()

    def pence(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def split(self, total: int, parts: int) -> list[int]:
        """`total` pence in `parts` uneven shares (none tiny), adding up exactly."""
        weights = [self.rng.uniform(1.0, 2.0) for _ in range(parts)]
        shares = [int(total * w // sum(weights)) for w in weights]
        shares[-1] = total - sum(shares[:-1])
        return shares

    def leg(
        self,
        account: AccountRef,
        seconds: int,
        pence: int,
        kind: str,
        channel: str,
        counterparty: str | None = None,
        merchant_category: str | None = None,
    ) -> dict[str, Any]:
        direction = "credit" if kind in ("deposit", "transfer_in") else "debit"
        description = {
            "deposit": "CASH DEPOSIT",
            "transfer_in": f"FASTER PAYMENT FROM {counterparty}",
            "transfer_out": f"FASTER PAYMENT TO {counterparty}",
            "card_payment": f"CARD PAYMENT TO {counterparty}",
        }[kind]
        return {
            "at": self.at(seconds),
            "account_id": account.account_id,
            "customer_id": account.customer_id,
            "type": kind,
            "direction": direction,
            "amount": str(Decimal(pence).scaleb(-2)),
            "channel": channel,
            "counterparty": counterparty,
            "description": description,
            "merchant_category": merchant_category,
        }

    def party(self) -> str:
        return self.rng.choice(EXTERNAL_PARTIES)

    # -- the cases ---------------------------------------------------------------------------

    def plan_structuring(self) -> Planned:
        """Three cash deposits of 9,000-9,990 within 7 days, each under the 10,000 reporting
        line: today, and two later days of the next six, in opening hours."""
        candidates = self.free(established=True)
        if not candidates:
            return None
        account = self.rng.choice(candidates)
        days = [0, *sorted(self.rng.sample(range(1, 7), 2))]
        legs = [
            self.leg(
                account,
                day * DAY + self.rng.randrange(9 * HOUR, 17 * HOUR),
                self.pence(900_000, 999_000),
                "deposit",
                self.rng.choices(("branch", "atm"), (0.7, 0.3))[0],
            )
            for day in days
        ]
        return account, legs, []

    def plan_velocity_count(self) -> Planned:
        """11 to 16 small debits within 50 minutes: card testing in online shops, or a run of
        payments from the app. Their sum stays far below the 24-hour amount threshold."""
        candidates = self.free(established=True, min_balance=Decimal(9_000))
        if not candidates:
            return None
        account = self.rng.choice(candidates)
        count = self.rng.randint(11, 16)
        start = self.rng.randrange(8 * HOUR, 21 * HOUR)
        offsets = [0, *(self.rng.randrange(0, 50 * 60) for _ in range(count - 1))]
        by_card = self.rng.random() < 0.5
        legs = []
        for offset in sorted(offsets):
            if by_card:
                shop = self.rng.choice(ONLINE_SHOPS)
                legs.append(
                    self.leg(
                        account,
                        start + offset,
                        self.pence(1_500, 25_000),
                        "card_payment",
                        "card",
                        shop,
                        "retail",
                    )
                )
            else:
                legs.append(
                    self.leg(
                        account,
                        start + offset,
                        self.pence(5_000, 48_000),
                        "transfer_out",
                        "mobile",
                        self.party(),
                    )
                )
        return account, legs, []

    def plan_velocity_amount(self) -> Planned:
        """52,000 to 85,000 paid away in 2 to 4 transfers within 10 hours of one day, from an
        account that holds it (no credit just before: that would be a pass-through)."""
        total = self.pence(5_200_000, 8_500_000)
        candidates = self.free(established=True, min_balance=Decimal(total + 100_000).scaleb(-2))
        if not candidates:
            return None
        account = self.rng.choice(candidates)
        parts = self.split(total, self.rng.randint(2, 4))
        start = self.rng.randrange(7 * HOUR, 12 * HOUR)
        offsets = sorted([0, *(self.rng.randrange(0, 10 * HOUR) for _ in parts[1:])])
        legs = [
            self.leg(
                account,
                start + offset,
                pence,
                "transfer_out",
                self.rng.choice(("online", "branch")),
                self.party(),
            )
            for offset, pence in zip(offsets, parts, strict=True)
        ]
        return account, legs, []

    def plan_pass_through(self) -> Planned:
        """A credit of 5,500 to 25,000 from outside, then 92-99 % of it paid away in 2 or 3
        transfers within 44 hours; only the last one takes the outflow past 90 %."""
        candidates = self.free(established=True)
        if not candidates:
            return None
        account = self.rng.choice(candidates)
        credit = self.pence(550_000, 2_500_000)
        start = self.rng.randrange(7 * HOUR, 18 * HOUR)
        out = round(credit * self.rng.uniform(0.92, 0.99))
        count = self.rng.randint(2, 3)
        early = round(out * self.rng.uniform(0.55, 0.75))
        parts = [*self.split(early, count - 1), out - early]
        offsets = sorted(self.rng.randrange(HOUR, 44 * HOUR) for _ in parts)
        legs = [self.leg(account, start, credit, "transfer_in", "system", self.party())]
        for offset, pence in zip(offsets, parts, strict=True):
            legs.append(
                self.leg(
                    account,
                    start + offset,
                    pence,
                    "transfer_out",
                    self.rng.choice(("online", "mobile")),
                    self.party(),
                )
            )
        return account, legs, []

    def plan_new_account_high_value(self) -> Planned:
        """One credit of 10,500 to 45,000 on an account opened at most 20 days ago: a payment
        from outside, or cash at a branch."""
        candidates = self.free(established=False)
        if not candidates:
            return None
        account = self.rng.choice(candidates)
        seconds = self.rng.randrange(8 * HOUR, 20 * HOUR)
        pence = self.pence(1_050_000, 4_500_000)
        if self.rng.random() < 0.7:
            leg = self.leg(account, seconds, pence, "transfer_in", "system", self.party())
        else:
            leg = self.leg(account, seconds, pence, "deposit", "branch")
        return account, [leg], []

    def plan_fan_in(self) -> Planned:
        """5 to 7 accounts of the bank each send 1,200 to 4,500 to one account within 60 hours;
        1 to 20 hours after the last, 85-97 % of it leaves in 1 or 2 payments outside."""
        targets = self.free(established=True)
        if not targets:
            return None
        target = self.rng.choice(targets)
        senders = [
            a for a in self.free(established=True, min_balance=Decimal(5_000)) if a != target
        ]
        count = self.rng.randint(5, 7)
        if len(senders) < count:
            return None
        senders = self.rng.sample(senders, count)
        start = self.rng.randrange(8 * HOUR, 20 * HOUR)
        offsets = sorted([0, *(self.rng.randrange(0, 60 * HOUR) for _ in senders[1:])])
        legs = []
        received = 0
        for sender, offset in zip(senders, offsets, strict=True):
            pence = self.pence(120_000, 450_000)
            received += pence
            legs.append(
                {
                    "at": self.at(start + offset),
                    "type": "internal",  # both legs, written by payments.transfer_legs
                    "account_id": sender.account_id,
                    "customer_id": sender.customer_id,
                    "payee": target.account_id,
                    "payee_customer_id": target.customer_id,
                    "amount": str(Decimal(pence).scaleb(-2)),
                    "channel": self.rng.choice(("online", "mobile")),
                }
            )
        out = round(received * self.rng.uniform(0.85, 0.97))
        last = start + offsets[-1]
        parts = self.split(out, self.rng.randint(1, 2))
        out_offsets = sorted(self.rng.randrange(HOUR, 20 * HOUR) for _ in parts)
        for offset, pence in zip(out_offsets, parts, strict=True):
            legs.append(
                self.leg(target, last + offset, pence, "transfer_out", "online", self.party())
            )
        return target, legs, senders
