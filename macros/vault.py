"""Data Vault 2.0 loading patterns, one macro each; a vault model is one call naming its source,
keys and payload (docs/data-vault.md says what each pattern guarantees, and why).

Every pattern is insert-only and incremental by load time: an interval reads the silver rows
published in it (`load_ts` between @start_tstz and @end_tstz), compares them with the model's own
rows loaded before the interval (self-reference), and writes only what is new. Whatever intervals
the work is split into, the result is the same (tests/test_vault_rebuild.py): each row depends only
on what the warehouse had received by its own load time.

- `@hub`: one row per business key, first load time and record source, from one or more sources.
- `@link`: one row per distinct combination of hub keys; a row with a missing key is skipped.
- `@sat`: a row when a version's hashdiff differs from the version before it in source order
  (effective_from, then batch), among the versions received by then; late versions included.
- `@eff_sat`: the same over a relationship's periods (start date, end date).
- `@record_tracking_sat`: a row each time a key's presence in the source changes (deleted, back).
- `@pit`: pointers to each satellite's row in effect at every instant a key changes.

Sources are silver models: they carry `load_ts`, `batch_id`, `record_source`, `is_valid` and
`is_deleted`. Hash keys and hashdiffs come from macros/hashing.py.
"""

from __future__ import annotations

from sqlglot import exp
from sqlmesh import macro

from macros.hashing import _hash

VALID = "is_valid and not is_deleted"
WINDOW = "load_ts between @start_tstz and @end_tstz"
MICROSECOND = "interval '1 microsecond'"


def _items(arg: exp.Expression | None) -> list[exp.Expression]:
    """The members of `(a, b)` or `[a, b]`, or `[a]` for a single expression."""
    if arg is None:
        return []
    if isinstance(arg, exp.Tuple | exp.Array):
        return list(arg.expressions)
    if isinstance(arg, exp.Paren):
        return [arg.this]
    return [arg]


def _sql(expression: exp.Expression) -> str:
    return expression.sql(dialect="postgres")


def _names(arg: exp.Expression | None) -> list[str]:
    return [_sql(e) for e in _items(arg)]


def _hash_of(columns: list[str], prefix: str = "", upper: bool = True) -> str:
    """@hash_key (or, upper=False, @hash_diff) of columns, each qualified with `prefix`."""
    return _hash(tuple(exp.column(c, table=prefix or None) for c in columns), upper=upper)


def _qualified(columns: list[str], alias: str) -> str:
    return ", ".join(f"{alias}.{c}" for c in columns)


def _equal(columns: list[str], left: str, right: str) -> str:
    return " and ".join(f"{left}.{c} = {right}.{c}" for c in columns)


def _not_null(columns: list[str]) -> str:
    return " and ".join(f"{c} is not null" for c in columns)


def _filter(where: exp.Expression | None) -> str:
    return _sql(where) if where is not None else VALID


def _parse(evaluator, query: str) -> exp.Expression:  # type: ignore[no-untyped-def]
    """The pattern's query as a subquery: a model selects from it (`select * from @hub(...)`),
    so that the model file keeps its post-statements (indexes, statistics).

    Macro variables in a macro's result are not expanded again: the interval's bounds and the
    bank's zone are put in here, as literals that mean one instant whatever the session's zone.
    """

    def literal(value: object) -> str:  # quoted as SQL text, whatever the value holds
        return exp.Literal.string(str(value)).sql(dialect="postgres")

    values = {
        "@start_tstz": f"cast({literal(evaluator.locals['start_tstz'])} as timestamptz)",
        "@end_tstz": f"cast({literal(evaluator.locals['end_tstz'])} as timestamptz)",
        "@bank_timezone": literal(evaluator.var("bank_timezone", "UTC")),
    }
    for name, value in values.items():
        query = query.replace(name, value)
    return exp.maybe_parse(f"({query})", dialect="postgres")


@macro()
def hub(  # type: ignore[no-untyped-def]
    evaluator,
    hash_key: exp.Expression,
    business_key: exp.Expression,
    sources: exp.Expression,
    where: exp.Expression | None = None,
) -> exp.Expression:
    """Hub: one row per business key, with the load that first brought it and its record source.

    `sources` are read in the order given: a key first seen in two of them in one load takes the
    first one's record source. Keys already in the hub before the interval are skipped; rows with
    a NULL business key are not keys.
    """
    keys = _names(business_key)
    hk = _sql(hash_key)
    listed = ", ".join(keys)
    arrivals = "\nunion all\n".join(
        f"select {listed}, load_ts, batch_id, record_source, {rank} as source_rank "
        f"from {_sql(table)} where {_filter(where)} and {WINDOW} and {_not_null(keys)}"
        for rank, table in enumerate(_items(sources))
    )
    return _parse(
        evaluator,
        f"""
        with arrivals as ({arrivals}),
        first_arrivals as (
          select distinct on ({listed}) {_hash_of(keys)} as {hk}, {listed}, load_ts, record_source
          from arrivals
          order by {listed}, load_ts, source_rank, batch_id
        ),
        already_held as materialized (
          /* read once, before the first row is written: a self anti-join planned on the
             empty table of a first build rescans it for every row it writes (quadratic); probed
             as a hashed NOT IN (a hash key is never NULL), as a join with this CTE planned on
             stale statistics rescans it for every key; the hub is read through its key's
             index (`= any(array(...))`), never scanned whole, whatever the estimates */
          select {hk} from {evaluator.this_model_fqn}
          where load_ts < @start_tstz and {hk} = any(array(select {hk} from first_arrivals))
        )
        select f.{hk}, {_qualified(keys, "f")}, f.load_ts, f.record_source
        from first_arrivals as f
        where f.{hk} not in (select {hk} from already_held)
        """,
    )


@macro()
def link(  # type: ignore[no-untyped-def]
    evaluator,
    link_key: exp.Expression,
    source: exp.Expression,
    where: exp.Expression | None = None,
    **hub_keys: exp.Expression,
) -> exp.Expression:
    """Link: one row per distinct combination of hub keys, first load and record source.

    `hub_keys` name each hub key and the source column it hashes, in order:
    `customer_hk := customer_id, account_hk := account_id`; the link key hashes the columns in
    that order. A row with any of them NULL is not loaded (silver reports it: dq_warnings).
    """
    lk = _sql(link_key)
    columns = [_sql(c) for c in hub_keys.values()]
    hashed = ", ".join(f"{_hash_of([_sql(c)])} as {name}" for name, c in hub_keys.items())
    names = ", ".join(hub_keys)
    return _parse(
        evaluator,
        f"""
        with arrivals as (
          select {_hash_of(columns)} as {lk}, {hashed}, load_ts, batch_id, record_source
          from {_sql(source)}
          where {_filter(where)} and {WINDOW} and {_not_null(columns)}
        ),
        first_arrivals as (
          select distinct on ({lk}) * from arrivals order by {lk}, load_ts, batch_id
        ),
        already_held as materialized (
          /* read once, before the first row is written, probed as a hashed NOT IN (see @hub) */
          select {lk} from {evaluator.this_model_fqn}
          where load_ts < @start_tstz and {lk} = any(array(select {lk} from first_arrivals))
        )
        select {lk}, {names}, load_ts, record_source
        from first_arrivals as f
        where f.{lk} not in (select {lk} from already_held)
        """,
    )


def versioned_sat(
    this: str,
    source: str,
    keys: list[str],
    hash_key: str,
    payload: list[tuple[str, str]],
    effective_from: str,
    where: str,
    subkey: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> str:
    """The satellite pattern, with late versions placed in source order (docs/data-vault.md).

    A key's versions are ordered by (effective_from, batch_id): source order. A version is stored
    at the first load at which its hashdiff differs from the version before it in that order,
    among the versions received by then: its own load, or the load of a late version that lands
    right before it (which can make a version once dropped as a repeat a change again). Every
    stored row keeps effective_from and batch_id, so readers order rows as versions, whatever
    order they arrived in. `subkey` splits a key's versions into separate histories (the periods
    of an effectivity satellite).
    """
    hk = hash_key
    part = [hk, *(name for name, _ in subkey)]
    listed = ", ".join(keys)
    attributes = [*subkey, *payload]
    hashdiff = _hash(tuple(exp.maybe_parse(e, dialect="postgres") for _, e in attributes), False)
    version = [*part, "effective_from", "batch_id"]
    selected = ", ".join(f"{expr} as {name}" for name, expr in attributes)
    # `= any(array(...))`: an index scan on the source's key, whatever join methods are allowed
    # (the model turns nested loops off: docs/data-vault.md, "Cost"); a composite key is narrowed
    # by its first column, then matched whole.
    touched = f"{keys[0]} = any(array(select {keys[0]} from touched))" + (
        f" and ({listed}) in (select {listed} from touched)" if len(keys) > 1 else ""
    )
    return f"""
        with touched as (
          /* keys with a version published in the interval */
          select distinct {listed} from {source} where {where} and {WINDOW}
        ),
        known as (
          /* every version of those keys the warehouse holds by the interval's end */
          select {_hash_of(keys)} as {hk}, {effective_from} as effective_from, batch_id,
            load_ts, record_source, {selected}, {hashdiff} as hashdiff
          from {source}
          where {where} and load_ts <= @end_tstz and {touched}
        ),
        arrivals as (select * from known where load_ts >= @start_tstz),
        successors as (
          /* the version right after an arrival in source order, among those received by then:
             a late arrival changes the version it follows */
          select distinct on ({_qualified(version, "a")})
            {_qualified(version, "n")}, n.hashdiff, a.load_ts as judged_at
          from arrivals as a
          join known as n
            on {_equal(part, "n", "a")} and n.load_ts <= a.load_ts
            and (n.effective_from, n.batch_id) > (a.effective_from, a.batch_id)
          order by {_qualified(version, "a")}, n.effective_from, n.batch_id
        ),
        candidates as (
          select {", ".join(version)}, hashdiff, load_ts as judged_at from arrivals
          union
          select {", ".join(version)}, hashdiff, judged_at from successors
        ),
        judged as (
          /* each candidate against the version before it, among those received when judged */
          select distinct on ({_qualified(version, "c")}, c.judged_at)
            c.*, p.hashdiff as previous_hashdiff
          from candidates as c
          left join known as p
            on {_equal(part, "p", "c")} and p.load_ts <= c.judged_at
            and (p.effective_from, p.batch_id) < (c.effective_from, c.batch_id)
          order by {_qualified(version, "c")}, c.judged_at, p.effective_from desc, p.batch_id desc
        ),
        first_changes as (
          /* a version is stored once: at the first load at which it was a change */
          select distinct on ({", ".join(version)}) {", ".join(version)}, judged_at
          from judged
          where hashdiff is distinct from previous_hashdiff
          order by {", ".join(version)}, judged_at
        ),
        already_held as materialized (
          /* read once, before the first row is written: a self anti-join planned on the
             empty table of a first build rescans it for every row it writes (quadratic) */
          select {", ".join(version)} from {this}
          where load_ts < @start_tstz and {hk} = any(array(select {hk} from first_changes))
        ),
        new_rows as (
          select f.* from first_changes as f
          where not exists (select 1 from already_held as t where {_equal(version, "t", "f")})
        )
        select
          k.{hk},
          /* rows of one key stored by one load keep source order, a microsecond apart */
          n.judged_at + (row_number() over (
            partition by k.{hk}, n.judged_at order by k.effective_from, k.batch_id
            {"".join(f", k.{name}" for name, _ in subkey)}
          ) - 1) * {MICROSECOND} as load_ts,
          k.hashdiff,
          k.record_source,
          k.effective_from,
          k.batch_id,
          {", ".join(f"k.{name}" for name, _ in attributes)}
        from new_rows as n
        join known as k on {_equal(version, "k", "n")}
        """


@macro()
def sat(  # type: ignore[no-untyped-def]
    evaluator,
    hash_key: exp.Expression,
    business_key: exp.Expression,
    source: exp.Expression,
    payload: exp.Expression,
    effective_from: exp.Expression | None = None,
    where: exp.Expression | None = None,
) -> exp.Expression:
    """Satellite: descriptive history of a hub (or link) key, insert-only.

    A row when a version's hashdiff (over `payload`) differs from the version before it in source
    order (`effective_from`, default updated_at; then batch): A, A keeps one row; A, B, A keeps
    three; several versions in one batch are all judged, in order. A late version (older than one
    already stored) is kept and placed in order. See versioned_sat.
    """
    columns = _names(payload)
    return _parse(
        evaluator,
        versioned_sat(
            this=evaluator.this_model_fqn,
            source=_sql(source),
            keys=_names(business_key),
            hash_key=_sql(hash_key),
            payload=[(c, c) for c in columns],
            effective_from=_sql(effective_from) if effective_from is not None else "updated_at",
            where=_filter(where),
        ),
    )


@macro()
def eff_sat(  # type: ignore[no-untyped-def]
    evaluator,
    hash_key: exp.Expression,
    business_key: exp.Expression,
    source: exp.Expression,
    start_date: exp.Expression,
    end_date: exp.Expression,
    effective_from: exp.Expression | None = None,
) -> exp.Expression:
    """Effectivity satellite: the periods of a relationship, each a history of its own.

    A period is keyed by its start date: a row when it opens (end_date NULL), when it closes
    (end_date set), when it reopens (end_date NULL again). A relationship that ends and returns
    gets a new period. A delete marker in the source closes the period on the day the
    warehouse learned of it (in the bank's zone), and never before it started.
    """
    start, end = _sql(start_date), _sql(end_date)
    learned = "(load_ts at time zone @bank_timezone)::date"
    closing = f"case when is_deleted then greatest({start}, {learned}) else {end} end"
    stamp = _sql(effective_from) if effective_from is not None else "updated_at"
    return _parse(
        evaluator,
        versioned_sat(
            this=evaluator.this_model_fqn,
            source=_sql(source),
            keys=_names(business_key),
            hash_key=_sql(hash_key),
            subkey=[("start_date", start)],
            payload=[("end_date", closing)],
            # A delete marker carries only the key: it takes effect when it was loaded.
            effective_from=f"coalesce({stamp}, load_ts)",
            where="is_valid",
        ),
    )


@macro()
def record_tracking_sat(  # type: ignore[no-untyped-def]
    evaluator,
    hash_key: exp.Expression,
    business_key: exp.Expression,
    source: exp.Expression,
    hub: exp.Expression,
) -> exp.Expression:
    """Record tracking: a row each time a key's presence in the source changes.

    A delete marker says deleted; a valid version says present (the source sent it again). Events
    follow load order (a delete marker carries no source time), a marker after a version of the
    same batch; a key is present until deleted. Only keys the hub held by then are tracked: a key
    deleted before it ever had a valid version has no hub row.
    """
    keys = _names(business_key)
    hk = _sql(hash_key)
    this = evaluator.this_model_fqn
    return _parse(
        evaluator,
        f"""
        with events as (
          select {_hash_of(keys)} as {hk}, load_ts, batch_id, is_deleted, record_source
          from {_sql(source)}
          where {WINDOW} and (is_deleted or is_valid)
        ),
        tracked as (
          select e.* from events as e
          where exists (
            select 1 from {_sql(hub)} as h where h.{hk} = e.{hk} and h.load_ts <= e.load_ts
          )
        ),
        state_before as materialized (
          /* read once, before the first row is written (see @hub) */
          select distinct on ({hk}) {hk}, is_deleted
          from {this}
          where load_ts < @start_tstz and {hk} = any(array(select {hk} from tracked))
          order by {hk}, load_ts desc
        ),
        sequenced as (
          select
            e.*,
            coalesce(
              lag(e.is_deleted) over (
                partition by e.{hk} order by e.load_ts, e.batch_id, e.is_deleted
              ),
              b.is_deleted,
              false
            ) as was_deleted
          from tracked as e
          left join state_before as b on b.{hk} = e.{hk}
        )
        select
          {hk},
          load_ts + (row_number() over (
            partition by {hk}, load_ts order by batch_id, is_deleted
          ) - 1) * {MICROSECOND} as load_ts,
          is_deleted,
          record_source
        from sequenced
        where is_deleted <> was_deleted
        """,
    )


@macro()
def pit(  # type: ignore[no-untyped-def]
    evaluator, hash_key: exp.Expression, satellites: exp.Expression
) -> exp.Expression:
    """Point-in-time table: at every instant a key changes in any of `satellites` (source time),
    the load time of each satellite's row in effect then, as the vault knew it at `load_ts`.

    An interval adds a row for each instant whose pointers its new satellite rows change: the
    instant of a new row, and (for a late row) every later instant of the key, whose picture the
    late row may change. A reader takes, for an instant, the row with the latest load_ts.
    """
    hk = _sql(hash_key)
    tables = _items(satellites)
    names = [t.name for t in tables]
    arrivals = "\nunion all\n".join(
        f"select {hk}, load_ts, effective_from from {_sql(t)} where {WINDOW}" for t in tables
    )
    rows = "\nunion all\n".join(
        f"select {hk}, load_ts, effective_from from {_sql(t)} "
        f"where load_ts <= @end_tstz and {hk} = any(array(select {hk} from moments))"
        for t in tables
    )

    def pointer(table: exp.Expression, known: str) -> str:
        return (
            f"(select s.load_ts from {_sql(table)} as s where s.{hk} = p.{hk} "
            f"and s.load_ts {known} p.known_at and s.effective_from <= p.as_of "
            "order by s.effective_from desc, s.batch_id desc limit 1)"
        )

    pairs = list(zip(tables, names, strict=True))
    now = ", ".join(f"{pointer(t, '<=')} as {n}_load_ts" for t, n in pairs)
    before = ", ".join(f"{pointer(t, '<')} as {n}_before" for t, n in pairs)
    changed = " or ".join(f"{n}_load_ts is distinct from {n}_before" for n in names)
    return _parse(
        evaluator,
        f"""
        with moments as (
          /* each load in the interval that brought rows of a key, from its earliest instant */
          select {hk}, load_ts as known_at, min(effective_from) as earliest
          from ({arrivals}) as a
          group by {hk}, load_ts
        ),
        satellite_rows as ({rows}),
        points as (
          select distinct m.{hk}, m.known_at, r.effective_from as as_of
          from moments as m
          join satellite_rows as r
            on r.{hk} = m.{hk} and r.load_ts <= m.known_at and r.effective_from >= m.earliest
        ),
        pointed as (select p.*, {now}, {before} from points as p)
        select {hk}, as_of, known_at as load_ts, {", ".join(f"{n}_load_ts" for n in names)}
        from pointed
        where {changed}
        """,
    )


# ---------------------------------------------------------------- helpers of the audits


@macro()
def whole_table(evaluator, model: exp.Expression) -> exp.Expression:  # type: ignore[no-untyped-def]
    """The table behind an audit's @this_model, unfiltered.

    SQLMesh gives an incremental model's audits `(select * from table where <window>)`: checks
    that compare the window's rows with the rest of the table (a key loaded twice, the row before
    a row) need the table itself.
    """
    if isinstance(model, exp.Table):
        return model
    table = model.find(exp.Table)
    if table is None:
        raise ValueError(f"no table in {model.sql()}")
    return table.copy()


@macro()
def columns_match(  # type: ignore[no-untyped-def]
    evaluator, left: exp.Expression, right: exp.Expression, columns: exp.Expression
) -> str:
    """`left.a = right.a and left.b = right.b` for each of `columns`."""
    return _equal(_names(columns), _sql(left), _sql(right))
