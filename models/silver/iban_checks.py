"""IBAN validity of every IBAN the published account versions carry, checked by schwifty
(checksum and country format), interval by interval.

Grain: iban, load_ts: a row per IBAN and publication that carried it (validity is a pure
function of the IBAN, so any of its rows answers). Per publication, not per interval: the rows
then do not depend on how the work was split into intervals, and a warehouse built run by run
equals one rebuilt at once (tests/test_incremental.py). A Python model because MOD-97 and
per-country formats belong to a maintained library, not to hand-written SQL.
"""

from __future__ import annotations

import typing as t
from datetime import datetime

import pandas as pd
from sqlmesh import ExecutionContext, model
from sqlmesh.core.model.kind import ModelKindName


def iban_problem(iban: str) -> str | None:
    """None when the IBAN is valid, else schwifty's reason."""
    from schwifty import IBAN
    from schwifty.exceptions import SchwiftyException

    try:
        IBAN(iban)
    except SchwiftyException as err:
        return str(err) or type(err).__name__
    return None


def utc_literal(moment: datetime) -> str:
    """A timestamptz literal that means the same instant whatever the session's TimeZone."""
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return f"timestamptz '{stamp.isoformat()}'"


@model(
    "silver.iban_checks",
    kind={"name": ModelKindName.INCREMENTAL_BY_TIME_RANGE, "time_column": "load_ts"},
    cron="@hourly",
    grain=["iban", "load_ts"],
    columns={"iban": "text", "load_ts": "timestamptz", "is_valid": "boolean", "problem": "text"},
    column_descriptions={
        "iban": "an IBAN as received in raw.accounts (trimmed, upper-case, spaces removed)",
        "load_ts": "when a batch carrying it was published",
        "is_valid": "schwifty accepts it: country format, length and MOD-97 checksum",
        "problem": "why schwifty rejects it",
    },
    depends_on=["raw.accounts", "ops.batches"],
    post_statements=["@create_index(iban)"],
)
def execute(
    context: ExecutionContext, start: datetime, end: datetime, **kwargs: t.Any
) -> t.Iterator[pd.DataFrame]:
    ibans = context.fetchdf(
        "select upper(replace(trim(r.iban), ' ', '')) as iban, b.published_at as load_ts "
        "from raw.accounts as r join ops.batches as b on b.batch_id = r._batch_id "
        f"where b.published_at between {utc_literal(start)} and {utc_literal(end)} "
        "and nullif(trim(r.iban), '') is not null group by 1, 2"
    )
    if ibans.empty:
        return
    problems = ibans["iban"].map(iban_problem)
    yield pd.DataFrame(
        {
            "iban": ibans["iban"],
            "load_ts": ibans["load_ts"],
            "is_valid": problems.isna(),
            "problem": problems,
        }
    )
