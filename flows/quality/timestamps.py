"""Dates and timestamps as numbers, ordered as Postgres orders them, for the rules GX judges.

Files are judged with pandas, which holds no datetime before 1677-09-21 or after 2262-04-11;
Postgres takes years 4713 BC to 294276 AD, and `infinity`. So that a contract gives the same
verdict on a file (GX) as on a database table (SQL), every value becomes seconds since
1970-01-01 UTC: by pandas within its range, by calendar arithmetic beyond it (0001-01-01,
10000-01-01, BC dates), and ±inf for ±infinity. NULL and text that is not ISO 8601 give NaN.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

ISO = re.compile(
    r"^\s*\+?(?P<year>\d{4,})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"(?:[T ](?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2}(?:\.\d+)?))?)?"
    r"\s*(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?(?P<bc>\s*BC)?\s*$",
    re.IGNORECASE,
)
INFINITE = {"infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a proleptic Gregorian date (year 0 is 1 BC): H. Hinnant's."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def iso_seconds(text: object) -> float:
    """Seconds since 1970-01-01 UTC of one ISO 8601 value of any year (NaN if not one)."""
    if not isinstance(text, str):
        return math.nan
    if text.strip().lower() in INFINITE:
        return INFINITE[text.strip().lower()]
    match = ISO.match(text)
    if match is None:
        return math.nan
    year = int(match["year"])
    if match["bc"]:
        year = 1 - year
    days = days_from_civil(year, int(match["month"]), int(match["day"]))
    seconds = int(match["hour"] or 0) * 3600 + int(match["minute"] or 0) * 60
    seconds += float(match["second"] or 0)
    zone = match["zone"]
    if zone and zone.upper() != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60
        seconds -= sign * offset
    return days * 86_400 + seconds


def epoch_seconds(values: pd.Series) -> pd.Series:
    """Seconds since 1970-01-01 UTC of each date or timestamp, in any year Postgres takes."""
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    # A copy: the accessor's result refuses (and drops) assignments.
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().copy()
    beyond = parsed.isna() & values.notna()
    if beyond.any():
        seconds.loc[beyond] = values[beyond].map(iso_seconds).astype(float)
    return seconds


def day_number(values: pd.Series, zone: str = "UTC") -> pd.Series:
    """Days since 1970-01-01 of each value's calendar day in `zone`.

    Beyond pandas' range the day is taken in UTC: such a value breaks `_too_early` or
    `_in_future` anyway, and with the default zone (UTC) the day is exact.
    """
    seconds = epoch_seconds(values)
    parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    local = parsed.dt.tz_convert(zone).dt.tz_localize(None).dt.normalize()
    days = (local - pd.Timestamp(0)) / pd.Timedelta(days=1)
    beyond = parsed.isna().to_numpy() & ~np.isnan(seconds.to_numpy(dtype=float))
    return days.mask(beyond, np.floor(seconds / 86_400))
