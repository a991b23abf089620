"""How each planted AML case is laid out: the accounts it uses and its legs, one method per
rule (aml.py states the rules and carries the cases from day to day).

A leg is a dict (it waits in `sim_state.aml_state` as JSON until its day): when it books, on
which account, what kind, how much. Every draw comes from the AML stream's rng.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from flows.simulate.rows import AccountRef

if TYPE_CHECKING:
    from flows.simulate.aml import AmlState

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
        # GBP accounts with a primary holder and good identifiers; the ones in a recent case are
        # left alone (free()).
        held = set(state.held)
        self.accounts = [
            a
            for a in accounts
            if a.currency == "GBP"
            and a.customer_id is not None
            and a.status == "open"
            and a.account_id not in held
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
            variant = ("count", "amount")[self.state.planted.get(rule, 0) % 2]
            method = f"{method}_{variant}"
        planned = getattr(self, method)()
        if planned is None:
            return False
        account, legs, others = planned
        legs.sort(key=lambda leg: leg["at"])
        case_id = self.state.next_case_id
        self.state.next_case_id += 1
        self.state.planted[rule] = self.state.planted.get(rule, 0) + 1
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

    def plan_fan_out(self) -> Planned:
        """A credit of 8,000 to 30,000 from outside, then 82-88 % of it sent to 5 to 7 other
        accounts of the bank, 49 to 71 hours after it: past the pass-through rule's 48 hours, and
        never 90 % of it, so the pass-through rule cannot fire on it whenever it is read."""
        sources = self.free(established=True)
        if not sources:
            return None
        source = self.rng.choice(sources)
        payees = [a for a in self.free(established=True) if a != source]
        count = self.rng.randint(5, 7)
        if len(payees) < count:
            return None
        payees = self.rng.sample(payees, count)
        credit = self.pence(800_000, 3_000_000)
        start = self.rng.randrange(7 * HOUR, 18 * HOUR)
        out = round(credit * self.rng.uniform(0.82, 0.88))
        offsets = sorted(self.rng.randrange(49 * HOUR, 71 * HOUR) for _ in payees)
        legs = [self.leg(source, start, credit, "transfer_in", "system", self.party())]
        for payee, offset, pence in zip(payees, offsets, self.split(out, count), strict=True):
            legs.append(
                {
                    "at": self.at(start + offset),
                    "type": "internal",  # both legs, written by payments.transfer_legs
                    "account_id": source.account_id,
                    "customer_id": source.customer_id,
                    "payee": payee.account_id,
                    "payee_customer_id": payee.customer_id,
                    "amount": str(Decimal(pence).scaleb(-2)),
                    "channel": self.rng.choice(("online", "mobile")),
                }
            )
        return source, legs, payees
