"""`simulate()`: advance the simulated core bank by some days, one database transaction per day."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg

from flows.simulate.aml import DEFAULT_RATE, RULES
from flows.simulate.feeds import FEEDS, write_feed_files
from flows.simulate.generator import BAD_KINDS, RATES, Rates, generate_day
from flows.simulate.rows import DayChanges, SimState
from flows.simulate.writer import (
    SOURCE_TABLES,
    apply_changes,
    apply_schema,
    lock_state,
    read_snapshot,
    save_state,
)

TABLES = SOURCE_TABLES


@dataclass
class SimulationSummary:
    """What a `simulate()` call did, for the CLI's table and for tests to reconcile against."""

    days_simulated: int = 0
    first_date: date | None = None  # the first simulated day of this call
    sim_date: date | None = None  # the last simulated day reached
    inserted: Counter[str] = field(default_factory=Counter)  # table -> rows
    updated: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    bad_records: Counter[str] = field(default_factory=Counter)  # kind -> rows
    feed_lines: Counter[str] = field(default_factory=Counter)  # feed -> lines written
    feed_bad_lines: Counter[str] = field(default_factory=Counter)  # "<feed>.<kind>" -> lines
    internal_transfers: int = 0  # transfers between the bank's accounts (two rows each)
    aml_cases: Counter[str] = field(default_factory=Counter)  # rule -> cases completed
    landing_dir: Path | None = None  # where the feed files went (None: not written)

    def add_day(self, changes: DayChanges, wrote_feeds: bool) -> None:
        self.days_simulated += 1
        self.first_date = self.first_date or changes.day
        self.sim_date = changes.day
        self.inserted.update(changes.inserted())
        self.updated.update(changes.updated())
        self.deleted.update(changes.deleted())
        self.bad_records.update(changes.bad)
        self.internal_transfers += changes.internal_transfers
        self.aml_cases.update(case.rule for case in changes.aml_cases)
        if wrote_feeds and changes.feeds is not None:
            self.feed_lines.update({f: len(changes.feeds.lines[f]) for f in FEEDS})
            self.feed_bad_lines.update(changes.feeds.bad)

    def rows(self) -> list[tuple[str, str | int]]:
        """(label, value) pairs for a summary table, in a fixed order, zero counts included."""
        result: list[tuple[str, str | int]] = [
            ("days simulated", self.days_simulated),
            ("simulated date reached", self.sim_date.isoformat() if self.sim_date else "-"),
        ]
        for table in TABLES:
            result.append((f"{table} inserted", self.inserted[table]))
            result.append((f"{table} updated", self.updated[table]))
            result.append((f"{table} deleted", self.deleted[table]))
        result.append(("internal transfers", self.internal_transfers))
        for rule in RULES:
            result.append((f"AML cases: {rule.replace('_', ' ')}", self.aml_cases[rule]))
        for kind in BAD_KINDS:
            result.append((f"bad: {kind.replace('_', ' ')}", self.bad_records[kind]))
        for feed in FEEDS:
            result.append((f"{feed} lines", self.feed_lines[feed]))
            bad = sum(n for k, n in self.feed_bad_lines.items() if k.startswith(f"{feed}."))
            result.append((f"{feed} bad lines", bad))
        return result


def validate_arguments(days: int, scale: int, bad_rate: float, aml_cases: float) -> None:
    if not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be an integer >= 1, got {days!r}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    if not 0 <= bad_rate <= 0.5:
        raise ValueError(f"bad_rate must be between 0 and 0.5, got {bad_rate!r}")
    if not 0 <= aml_cases <= 100:
        raise ValueError(f"aml_cases must be between 0 and 100, got {aml_cases!r}")


def check_state_matches(state: SimState, seed: int, start_date: date) -> None:
    # Continuing with another seed would silently mix two different banks in one source.
    if state.seed != seed:
        raise ValueError(
            f"the source was simulated with seed {state.seed}, not seed {seed}: "
            "use the same seed, or start from an empty database"
        )
    if state.start_date != start_date:
        raise ValueError(
            f"the source was simulated from {state.start_date}, not from {start_date}: "
            "use the same start date, or start from an empty database"
        )


def simulate(
    conninfo: str,
    days: int,
    *,
    scale: int = 1000,
    seed: int = 42,
    bad_rate: float = 0.005,
    aml_cases: float = DEFAULT_RATE,
    start_date: date = date(2026, 1, 1),
    landing_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    rates: Rates = RATES,
) -> SimulationSummary:
    """Advance the source by `days` simulated days from where `sim_state` says it is.

    Day 0 on an empty database opens the bank (products, `scale` customers with accounts);
    `scale` does not matter after that, as daily volumes follow the customers present.
    `aml_cases`: AML cases of each rule planted per 30 days per 1,000 customers (0: none; see
    aml.py). Each day is one database transaction. With `landing_dir`, each day also writes the
    CRM/ops files under landing_dir/<feed>/ (rewriting a day gives the same bytes).
    """
    validate_arguments(days, scale, bad_rate, aml_cases)
    summary = SimulationSummary(landing_dir=None if landing_dir is None else Path(landing_dir))
    with psycopg.connect(conninfo) as conn:
        apply_schema(conn)
        for done in range(1, days + 1):
            with conn.transaction():
                changes = simulate_one_day(
                    conn, scale, seed, bad_rate, aml_cases, start_date, rates
                )
                # Files before commit: if the commit fails, a rerun rewrites identical files.
                if landing_dir is not None and changes.feeds is not None:
                    write_feed_files(Path(landing_dir), changes.feeds)
            summary.add_day(changes, wrote_feeds=landing_dir is not None)
            if progress is not None:
                progress(done, days)
    return summary


def simulate_one_day(
    conn: psycopg.Connection,
    scale: int,
    seed: int,
    bad_rate: float,
    aml_cases: float,
    start_date: date,
    rates: Rates,
) -> DayChanges:
    state = lock_state(conn)
    if state is None:
        state = SimState(seed=seed, start_date=start_date, days_simulated=0)
    check_state_matches(state, seed, start_date)
    snapshot = read_snapshot(conn, state)
    changes = generate_day(
        snapshot, scale=scale, bad_rate=bad_rate, aml_cases=aml_cases, rates=rates
    )
    apply_changes(conn, changes)
    assert changes.next_state is not None
    save_state(conn, changes.next_state)
    return changes
