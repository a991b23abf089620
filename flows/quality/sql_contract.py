"""A contract's rules compiled to SQL, to judge a whole batch where it already is.

Rows from a database table arrive by COPY straight into raw, inside the batch's transaction.
GX's own SQL engine would need a connection of its own (which cannot see an uncommitted batch),
and its pandas engine costs ~230 MB of imports and ~5 µs a row: a 1M-row table would take longer
to judge than to copy. So the same rules are translated, one by one, into predicates with the
semantics of the GX expectations they are (NULL passes every rule but `_missing`; regexes
search, anchored by the pattern), and one DELETE ... RETURNING moves the rows that break any of
them into quarantine. The translation is checked against GX itself in tests/test_contracts.py.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from flows.quality.contracts import Contract, Rule
from flows.quality.quarantine import RAW_METADATA
from flows.quality.results import RuleStat

INVALID_IBANS = sql.Identifier("_invalid_ibans")


def column_sql(contract: Contract, name: str) -> sql.Composable:
    """A column, or the SQL of a derived column the contract defines."""
    if name in contract.derived_sql:
        return sql.SQL(contract.derived_sql[name])
    return sql.Identifier(name)


def predicate(contract: Contract, rule: Rule) -> sql.Composable:
    """True when a row breaks `rule`, with the semantics of the GX expectation it becomes."""
    column = column_sql(contract, rule.column)
    if rule.kind == "not_null":
        return sql.SQL("({} is null)").format(column)
    if rule.kind == "in_set":
        values = sql.SQL(", ").join(sql.Literal(str(v)) for v in rule.values)
        return sql.SQL("({c} is not null and {c}::text not in ({v}))").format(c=column, v=values)
    if rule.kind == "match":
        # GX searches (re.search); the patterns anchor themselves. Postgres's ~ searches too.
        return sql.SQL("({c} is not null and {c}::text !~ {r})").format(
            c=column, r=sql.Literal(rule.regex)
        )
    if rule.kind == "between":
        bounds = []
        if rule.min_value is not None:
            op = sql.SQL(">" if rule.strict_min else ">=")
            bounds.append(sql.SQL("{} {} {}").format(column, op, sql.Literal(rule.min_value)))
        if rule.max_value is not None:
            op = sql.SQL("<" if rule.strict_max else "<=")
            bounds.append(sql.SQL("{} {} {}").format(column, op, sql.Literal(rule.max_value)))
        return sql.SQL("({c} is not null and not ({b}))").format(
            c=column, b=sql.SQL(" and ").join(bounds)
        )
    if rule.kind == "not_after":
        other = column_sql(contract, rule.other_column or "")
        return sql.SQL("({c} is not null and {o} is not null and {c} > {o})").format(
            c=column, o=other
        )
    if rule.kind == "iban":
        return sql.SQL("({c} is not null and {c}::text in (select iban from {t}))").format(
            c=column, t=INVALID_IBANS
        )
    raise NotImplementedError(f"rule {rule.name}: kind {rule.kind!r} has no SQL translation")


def prepare_iban_check(
    conn: psycopg.Connection, table: sql.Composable, where: sql.Composable, contract: Contract
) -> None:
    """schwifty judges the distinct IBANs of the rows in question (few, even in a big batch)."""
    from flows.quality.iban import is_valid_iban

    columns = [rule.column for rule in contract.checks if rule.kind == "iban"]
    if not columns:
        return
    conn.execute(
        sql.SQL("create temp table if not exists {} (iban text primary key) on commit drop").format(
            INVALID_IBANS
        )
    )
    conn.execute(sql.SQL("truncate {}").format(INVALID_IBANS))
    for column in columns:
        ibans = conn.execute(
            sql.SQL("select distinct {c}::text from {t} where {w} and {c} is not null").format(
                c=sql.Identifier(column), t=table, w=where
            )
        ).fetchall()
        invalid = [(iban,) for (iban,) in ibans if not is_valid_iban(iban)]
        if invalid:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("insert into {} values (%s) on conflict do nothing").format(
                        INVALID_IBANS
                    ),
                    invalid,
                )


def rules_broken(contract: Contract) -> tuple[sql.Composable, sql.Composable]:
    """(any rule broken, text[] of the rules broken) as SQL over a row of the entity."""
    pairs = [(rule.name, predicate(contract, rule)) for rule in contract.checks]
    broken_any = sql.SQL(" or ").join(p for _, p in pairs)
    names = sql.SQL(", ").join(
        sql.SQL("case when {} then {} end").format(p, sql.Literal(rule)) for rule, p in pairs
    )
    return broken_any, sql.SQL("array_remove(array[{}]::text[], null)").format(names)


def quarantine_batch(
    conn: psycopg.Connection, contract: Contract, batch_id: int, rows_in: int
) -> tuple[int, dict[str, RuleStat]]:
    """Move this batch's rows that break the contract from raw into quarantine (one statement).

    Returns how many moved and, per rule, rows evaluated and failed.
    """
    entity = contract.entity
    raw = sql.Identifier("raw", entity)
    in_batch = sql.SQL("_batch_id = {}").format(sql.Literal(batch_id))
    prepare_iban_check(conn, raw, in_batch, contract)
    broken_any, broken_names = rules_broken(contract)
    metadata = sql.SQL(" - ").join(sql.Literal(m) for m in RAW_METADATA)
    moved = conn.execute(
        sql.SQL(
            """
            with moved as (
                delete from {raw} where {in_batch} and ({broken_any})
                returning *, {broken_names} as _rules
            )
            insert into {quarantine} (batch_id, record_source, payload, rules)
            select {batch}, m._record_source, to_jsonb(m) - '_rules' - {metadata}, m._rules
            from moved as m
            """
        ).format(
            raw=raw,
            in_batch=in_batch,
            broken_any=broken_any,
            broken_names=broken_names,
            quarantine=sql.Identifier("quarantine", entity),
            batch=sql.Literal(batch_id),
            metadata=metadata,
        )
    ).rowcount
    failed = dict(
        conn.execute(
            sql.SQL(
                "select rule, count(*) from {}, unnest(rules) as rule where batch_id = %s "
                "group by rule"
            ).format(sql.Identifier("quarantine", entity)),
            (batch_id,),
        ).fetchall()
    )
    stats = {
        rule: RuleStat(rule, column, rows_in, failed.get(rule, 0))
        for rule, column, _ in contract.rules()
    }
    return moved, stats
