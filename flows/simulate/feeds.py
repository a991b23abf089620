"""The daily CRM / operations files: interactions, opportunities and orders.

Generation is pure (an rng, the day and the carried-over `FeedState` in, lines out); writing the
files is separate. The state travels in `sim_state.feed_state` so that a run split over several
calls writes the same bytes as one long run.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

FEEDS = ("interactions", "opportunities", "orders")

INTERACTION_CHANNELS = ("branch", "phone", "web", "app", "email")
ORDER_CHANNELS = ("branch", "phone", "web", "app")
UNKNOWN_CHANNELS = ("fax", "carrier_pigeon", "WEB ")
INTERACTION_TYPES = ("complaint", "enquiry", "service", "sales")
INTERACTION_TYPE_WEIGHTS = (0.10, 0.45, 0.35, 0.10)

STAGE_PROBABILITY = {"prospect": 0.1, "qualified": 0.3, "proposal": 0.6, "won": 1.0, "lost": 0.0}
NEXT_STAGE: dict[str, tuple[tuple[str, float], ...]] = {
    "prospect": (("qualified", 0.7), ("lost", 0.3)),
    "qualified": (("proposal", 0.7), ("lost", 0.3)),
    "proposal": (("won", 0.6), ("lost", 0.4)),
}
NEXT_ORDER_STATUS: dict[str, tuple[tuple[str, float], ...]] = {
    "placed": (("approved", 0.80), ("rejected", 0.15), ("cancelled", 0.05)),
    "approved": (("fulfilled", 0.90), ("cancelled", 0.10)),
}

# Typical deal size per product category, in pence.
AMOUNT_RANGE_BY_CATEGORY = {
    "current": (10_000, 500_000),
    "savings": (100_000, 5_000_000),
    "credit_card": (50_000, 1_000_000),
    "loan": (100_000, 2_500_000),
}

BAD_KINDS = {
    "interactions": ("unknown_channel", "missing_customer_id"),
    "opportunities": ("probability_out_of_range", "negative_amount", "missing_customer_id"),
    "orders": ("negative_amount", "unknown_channel", "missing_customer_id"),
}

ORDER_COLUMNS = (
    "order_id",
    "customer_id",
    "product_id",
    "channel",
    "status",
    "amount",
    "ordered_at",
    "updated_at",
)


@dataclass(frozen=True)
class FeedRates:
    interactions: float = 0.05  # share of customers with an interaction a day
    new_opportunities: float = 0.004  # share of customers opening an opportunity a day
    opportunity_moves: float = 0.10  # chance an open opportunity changes stage on a given day
    new_orders: float = 0.003
    order_moves: float = 0.40


@dataclass
class FeedState:
    """What the feeds carry from one day to the next: id counters and the still-open items."""

    next_interaction_id: int = 1
    next_opportunity_id: int = 1
    next_order_id: int = 1
    open_opportunities: list[dict[str, Any]] = field(default_factory=list)
    open_orders: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> FeedState:
        return cls(**data) if data else cls()

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FeedDay:
    """One day of feed lines (contract-breaking ones included) and the state after the day."""

    day: date
    lines: dict[str, list[dict[str, Any]]]
    state: FeedState
    bad: Counter[str]  # "<feed>.<kind>" -> lines


def draw_count(rng: random.Random, expected: float) -> int:
    """An integer with the given mean: the fraction is rounded up with that probability."""
    whole = int(expected)
    return whole + (rng.random() < expected - whole)


def pick_bad(rng: random.Random, n: int, bad_rate: float, kinds: Sequence[str]) -> dict[int, str]:
    """Which of n new rows to spoil, and how: kinds rotate so every kind shows up early."""
    count = min(n, draw_count(rng, n * bad_rate))
    if count == 0:
        return {}
    start = rng.randrange(len(kinds))
    chosen = sorted(rng.sample(range(n), count))
    return {index: kinds[(start + i) % len(kinds)] for i, index in enumerate(chosen)}


def moment(rng: random.Random, day: date) -> datetime:
    return datetime.combine(day, time(), UTC) + timedelta(seconds=rng.randrange(86_400))


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def weighted_next(rng: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    names, weights = zip(*options, strict=True)
    return rng.choices(names, weights)[0]


def generate_feeds(
    rng: random.Random,
    day: date,
    customer_ids: Sequence[int],
    products: Sequence[tuple[str, str]],
    state: FeedState,
    *,
    bad_rate: float,
    rates: FeedRates = FeedRates(),
) -> FeedDay:
    """The day's feed lines. `products` are (product_id, category) pairs."""
    state = FeedState.from_json(state.to_json())  # never mutate the caller's state
    lines = {
        "interactions": interaction_lines(rng, day, customer_ids, state, rates),
        "opportunities": opportunity_lines(rng, day, customer_ids, products, state, rates),
        "orders": order_lines(rng, day, customer_ids, products, state, rates),
    }
    bad: Counter[str] = Counter()
    for feed in FEEDS:
        spoil = pick_bad(rng, len(lines[feed]), bad_rate, BAD_KINDS[feed])
        for index, kind in spoil.items():
            lines[feed][index] = spoil_line(rng, lines[feed][index], kind)
            bad[f"{feed}.{kind}"] += 1
    return FeedDay(day=day, lines=lines, state=state, bad=bad)


def interaction_lines(
    rng: random.Random,
    day: date,
    customer_ids: Sequence[int],
    state: FeedState,
    rates: FeedRates,
) -> list[dict[str, Any]]:
    count = min(len(customer_ids), draw_count(rng, len(customer_ids) * rates.interactions))
    events = []
    for customer_id in rng.sample(list(customer_ids), count):
        kind = rng.choices(INTERACTION_TYPES, INTERACTION_TYPE_WEIGHTS)[0]
        # Complaints lean negative, sales conversations positive.
        centre = {"complaint": -0.6, "sales": 0.4}.get(kind, 0.1)
        sentiment = max(-1.0, min(1.0, rng.gauss(centre, 0.3)))
        events.append(
            (moment(rng, day), customer_id, rng.choice(INTERACTION_CHANNELS), kind, sentiment)
        )
    events.sort(key=lambda e: (e[0], e[1]))  # ids follow time, as a real CRM would number them
    result = []
    for occurred_at, customer_id, channel, kind, sentiment in events:
        result.append(
            {
                "interaction_id": state.next_interaction_id,
                "customer_id": customer_id,
                "channel": channel,
                "interaction_type": kind,
                "sentiment": round(sentiment, 2),
                "occurred_at": iso(occurred_at),
            }
        )
        state.next_interaction_id += 1
    return result


def opportunity_lines(
    rng: random.Random,
    day: date,
    customer_ids: Sequence[int],
    products: Sequence[tuple[str, str]],
    state: FeedState,
    rates: FeedRates,
) -> list[dict[str, Any]]:
    result = []
    still_open = []
    for opp in state.open_opportunities:
        if rng.random() < rates.opportunity_moves:
            opp = {**opp, "stage": weighted_next(rng, NEXT_STAGE[opp["stage"]])}
            result.append(opportunity_line(opp, moment(rng, day)))
        if opp["stage"] in NEXT_STAGE:
            still_open.append(opp)
    count = draw_count(rng, len(customer_ids) * rates.new_opportunities) if customer_ids else 0
    for _ in range(count):
        product_id, category = rng.choice(products)
        created = moment(rng, day)
        opp = {
            "opportunity_id": state.next_opportunity_id,
            "customer_id": rng.choice(customer_ids),
            "product_code": product_id,
            "stage": "prospect",
            "amount_pence": rng.randint(*AMOUNT_RANGE_BY_CATEGORY[category]),
            "created_at": iso(created),
        }
        state.next_opportunity_id += 1
        result.append(opportunity_line(opp, created))
        still_open.append(opp)
    state.open_opportunities = still_open
    return result


def opportunity_line(opp: dict[str, Any], updated_at: datetime) -> dict[str, Any]:
    return {
        "opportunity_id": opp["opportunity_id"],
        "customer_id": opp["customer_id"],
        "product_code": opp["product_code"],
        "stage": opp["stage"],
        "amount": opp["amount_pence"] / 100,
        "probability": STAGE_PROBABILITY[opp["stage"]],
        "created_at": opp["created_at"],
        "updated_at": max(iso(updated_at), opp["created_at"]),
    }


def order_lines(
    rng: random.Random,
    day: date,
    customer_ids: Sequence[int],
    products: Sequence[tuple[str, str]],
    state: FeedState,
    rates: FeedRates,
) -> list[dict[str, Any]]:
    result = []
    still_open = []
    for order in state.open_orders:
        if rng.random() < rates.order_moves:
            order = {**order, "status": weighted_next(rng, NEXT_ORDER_STATUS[order["status"]])}
            result.append(order_line(order, moment(rng, day)))
        if order["status"] in NEXT_ORDER_STATUS:
            still_open.append(order)
    count = draw_count(rng, len(customer_ids) * rates.new_orders) if customer_ids else 0
    for _ in range(count):
        product_id, category = rng.choice(products)
        ordered = moment(rng, day)
        order = {
            "order_id": state.next_order_id,
            "customer_id": rng.choice(customer_ids),
            "product_id": product_id,
            "channel": rng.choice(ORDER_CHANNELS),
            "status": "placed",
            "amount_pence": rng.randint(*AMOUNT_RANGE_BY_CATEGORY[category]),
            "ordered_at": iso(ordered),
        }
        state.next_order_id += 1
        result.append(order_line(order, ordered))
        still_open.append(order)
    state.open_orders = still_open
    return result


def order_line(order: dict[str, Any], updated_at: datetime) -> dict[str, Any]:
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "product_id": order["product_id"],
        "channel": order["channel"],
        "status": order["status"],
        "amount": order["amount_pence"] / 100,
        "ordered_at": order["ordered_at"],
        "updated_at": max(iso(updated_at), order["ordered_at"]),
    }


def spoil_line(rng: random.Random, line: dict[str, Any], kind: str) -> dict[str, Any]:
    line = dict(line)
    if kind == "missing_customer_id":
        line["customer_id"] = None
    elif kind == "unknown_channel":
        line["channel"] = rng.choice(UNKNOWN_CHANNELS)
    elif kind == "negative_amount":
        line["amount"] = -abs(line["amount"]) or -1.0
    elif kind == "probability_out_of_range":
        line["probability"] = rng.choice((-0.2, 1.5, 12.0))
    else:
        raise ValueError(f"unknown feed defect {kind!r}")
    return line


def feed_path(landing_dir: Path, feed: str, day: date) -> Path:
    suffix = "csv" if feed == "orders" else "jsonl"
    return landing_dir / feed / f"{feed}_{day.isoformat()}.{suffix}"


def render_jsonl(lines: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(line) + "\n" for line in lines)


def render_orders_csv(lines: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ORDER_COLUMNS)
    for line in lines:
        row = dict(line, amount=f"{line['amount']:.2f}")
        writer.writerow(["" if row[col] is None else row[col] for col in ORDER_COLUMNS])
    return out.getvalue()


def write_feed_files(landing_dir: Path, feed_day: FeedDay) -> dict[str, Path]:
    """Write the day's three files, each atomically, so a loader never picks up half a file: the
    landing protocol (README) never reads a `.name.tmp` and counts a file once renamed."""
    written = {}
    for feed in FEEDS:
        lines = feed_day.lines[feed]
        text = render_orders_csv(lines) if feed == "orders" else render_jsonl(lines)
        path = feed_path(landing_dir, feed, feed_day.day)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
        written[feed] = path
    return written
