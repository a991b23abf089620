"""The simulated bank as bankdw's commands advance it.

`bankdw simulate` and `bankdw run` (its simulate step) both call `advance`, with the settings'
seed, start date and landing folder: the same days give the same source rows and the same feed
files whichever command advanced the bank, and no day is left without its files.
"""

from __future__ import annotations

from collections.abc import Callable

from flows.settings import Settings, get_settings
from flows.simulate.run import SimulationSummary, simulate


def advance(
    target_url: str,
    days: int,
    *,
    scale: int | None = None,
    seed: int | None = None,
    bad_rate: float | None = None,
    aml_cases: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    settings: Settings | None = None,
) -> SimulationSummary:
    """Simulate `days` more days into `target_url`, writing each day's feed files into the
    landing folder (none when there is no landing folder: a server warehouse without
    LANDING_DIR). Unset arguments come from the settings (SIM_*)."""
    settings = settings or get_settings()
    return simulate(
        target_url,
        days,
        scale=scale or settings.sim_scale,
        seed=settings.sim_seed if seed is None else seed,
        bad_rate=settings.sim_bad_rate if bad_rate is None else bad_rate,
        aml_cases=settings.sim_aml_cases if aml_cases is None else aml_cases,
        start_date=settings.sim_start_date,
        landing_dir=settings.landing_path,
        progress=progress,
    )
