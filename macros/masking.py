"""Personal data as gold shows it to analysts: the one place that decides how it is masked.

Full personal data stays in the vault's personal satellites (vault.sat_customer_personal), which
the `analyst` role cannot read; gold keeps only what answers analysts' questions without naming
or reaching a person:

  @mask_email(col)          first character of the local part, `***`, then `@domain`
                            ('jane.doe12@example.com' -> 'j***@example.com'); NULL when the value
                            has no `@` (nothing to mask reliably, so nothing is shown).
  @phone_last4(col)         the last 4 digits of the number, digits only ('+44 (0)113 496 0123'
                            -> '0123'); NULL when the number has fewer than 7 digits (its last 4
                            would be most of it).
  @age_band(dob, as_of)     '<18', '18-24', '25-34', '35-44', '45-54', '55-64', '65+' on the date
                            `as_of`; NULL without a date of birth.
  @postcode_district(col)   a UK postcode's outward code, the district ('LS1 4AP' -> 'LS1'): the
                            inward code is always its last 3 characters, so this holds with or
                            without the space. NULL when too short to be a postcode.

Names and address lines are not masked but left out of gold (a masked name still narrows a
person down, and no analyst question needs it).
"""

from __future__ import annotations

from sqlglot import exp
from sqlmesh import macro

# Each macro's result is cast to text so that SQLMesh knows the column's type without a database
# (the data dictionary, docs/gold.md, is generated from the models alone).

# (lowest age, label), ascending; an age below the first bound is '<18'.
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (18, "18-24"),
    (25, "25-34"),
    (35, "35-44"),
    (45, "45-54"),
    (55, "55-64"),
    (65, "65+"),
)
MIN_PHONE_DIGITS = 7


def _sql(expression: exp.Expression) -> str:
    return expression.sql(dialect="postgres")


@macro()
def mask_email(evaluator, column: exp.Expression) -> str:  # type: ignore[no-untyped-def]
    """E-mail with its local part masked but for its first character."""
    value = f"lower(trim(cast({_sql(column)} as text)))"
    return (
        f"cast(case when {value} ~ '^[^@]+@[^@]+$' "
        f"then left({value}, 1) || '***' || substring({value} from '@.*$') end as text)"
    )


@macro()
def phone_last4(evaluator, column: exp.Expression) -> str:  # type: ignore[no-untyped-def]
    """The last 4 digits of a telephone number, digits only."""
    digits = f"regexp_replace(cast({_sql(column)} as text), '[^0-9]', '', 'g')"
    last4 = f"case when length({digits}) >= {MIN_PHONE_DIGITS} then right({digits}, 4) end"
    return f"cast({last4} as text)"


@macro()
def age_band(evaluator, date_of_birth: exp.Expression, as_of: exp.Expression) -> str:  # type: ignore[no-untyped-def]
    """The age band of a person born on `date_of_birth`, on the date `as_of`.

    Ages are whole years between two dates (`age()` of two timestamps without zone): no server
    TimeZone enters the answer.
    """
    dob = f"cast({_sql(date_of_birth)} as date)"
    age = f"extract(year from age(cast({_sql(as_of)} as date), {dob}))"
    whens = " ".join(f"when {age} >= {low} then '{label}'" for low, label in reversed(AGE_BANDS))
    return f"cast(case when {dob} is null then null {whens} else '<{AGE_BANDS[0][0]}' end as text)"


@macro()
def postcode_district(evaluator, column: exp.Expression) -> str:  # type: ignore[no-untyped-def]
    """A UK postcode's outward code (the part before the space)."""
    compact = f"upper(regexp_replace(cast({_sql(column)} as text), '[[:space:]]', '', 'g'))"
    return f"cast(case when length({compact}) >= 5 then left({compact}, -3) end as text)"
