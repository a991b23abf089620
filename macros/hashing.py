"""Data Vault hash keys and hashdiffs: the one place that decides how business keys are hashed.

hash_key(a, b, ...) = md5(part(a) || chr(31) || part(b) || ...), where
  part(x) = upper(trim(x::text with control characters removed)), or chr(30) when x is NULL or
            empty after trimming.
Control characters are stripped from every part, so the delimiter chr(31) (unit separator) and the
NULL marker chr(30) (record separator) can never occur inside a part: ('a|', 'b') and ('a', '|b')
hash differently, and NULL differs from the string 'NULL'. Keys are upper-cased (business keys are
case-insensitive); hashdiffs are not (a changed capital letter in a name is a real change).
"""

from __future__ import annotations

from sqlglot import exp
from sqlmesh import macro

DELIMITER = "chr(31)"
NULL_MARKER = "chr(30)"


def _part(expression: exp.Expression, upper: bool) -> str:
    raw = expression.sql(dialect="postgres")
    # Control characters go first, then the spaces around: no delimiter can hide in a part.
    text = f"trim(regexp_replace(cast({raw} as text), '[[:cntrl:]]', '', 'g'))"
    if upper:
        text = f"upper({text})"
    return f"coalesce(nullif({text}, ''), {NULL_MARKER})"


def _hash(parts: tuple[exp.Expression, ...], upper: bool) -> str:
    if not parts:
        raise ValueError("a hash needs at least one column")
    joined = f" || {DELIMITER} || ".join(_part(p, upper) for p in parts)
    return f"md5({joined})"


@macro()
def hash_key(evaluator, *columns: exp.Expression) -> str:
    """Hash key of a business key (one or more columns): trimmed, upper-cased, NULL-safe."""
    return _hash(columns, upper=True)


@macro()
def hash_diff(evaluator, *columns: exp.Expression) -> str:
    """Hashdiff of descriptive attributes: trimmed, case kept, NULL-safe."""
    return _hash(columns, upper=False)
