"""What gold's incremental models share: which keys an interval touched."""

from __future__ import annotations

from sqlglot import exp
from sqlmesh import macro

from macros.vault import WINDOW, _parse, _sql


@macro()
def keys_loaded(evaluator, key: exp.Expression, *tables: exp.Expression) -> exp.Expression:  # type: ignore[no-untyped-def]
    """The keys with a row loaded into any of `tables` in the interval, as a subquery
    (`select k from @keys_loaded(k, vault.sat_a, vault.sat_b) as loaded`): what an incremental
    gold model re-derives. Each table is read through its load_ts index."""
    column = _sql(key)
    union = " union ".join(f"select {column} from {_sql(t)} where {WINDOW}" for t in tables)
    return _parse(evaluator, union)
