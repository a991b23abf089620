"""IBAN validity of every IBAN raw has seen, checked by schwifty (checksum and GB format).

Grain: iban. A Python model because MOD-97 and per-country formats belong to a maintained library,
not to hand-written SQL.
"""

from __future__ import annotations

import typing as t

import pandas as pd
from sqlmesh import ExecutionContext, model


def iban_problem(iban: str) -> str | None:
    """None when the IBAN is valid, else schwifty's reason."""
    from schwifty import IBAN
    from schwifty.exceptions import SchwiftyException

    try:
        IBAN(iban)
    except SchwiftyException as err:
        return str(err) or type(err).__name__
    return None


@model(
    "silver.iban_checks",
    kind="FULL",
    grain="iban",
    columns={"iban": "text", "is_valid": "boolean", "problem": "text"},
    column_descriptions={
        "iban": "an IBAN as received in raw.accounts (trimmed, upper-case, spaces removed)",
        "is_valid": "schwifty accepts it: country format, length and MOD-97 checksum",
        "problem": "why schwifty rejects it",
    },
)
def execute(context: ExecutionContext, **kwargs: t.Any) -> t.Iterator[pd.DataFrame]:
    ibans = context.fetchdf(
        "select distinct upper(replace(trim(iban), ' ', '')) as iban "
        "from raw.accounts where nullif(trim(iban), '') is not null"
    )
    if ibans.empty:
        return
    problems = ibans["iban"].map(iban_problem)
    yield pd.DataFrame({"iban": ibans["iban"], "is_valid": problems.isna(), "problem": problems})
