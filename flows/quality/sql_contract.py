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

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from flows.quality.contracts import Contract, Rule, earliest_epoch
from flows.quality.quarantine import RAW_METADATA
from flows.quality.results import RuleStat
from flows.settings import get_settings

INVALID_IBANS = sql.Identifier("_invalid_ibans")
FILE_POSITION = ("_source_file", "_source_line")  # raw columns of feed files


def column_sql(contract: Contract, name: str, now: datetime) -> sql.Composable:
    """A column, or the SQL of a derived column the contract defines (judged at `now`)."""
    if name in contract.derived_sql:
        settings = get_settings()
        bound = now + timedelta(seconds=settings.future_tolerance_seconds)
        return sql.SQL(contract.derived_sql[name]).format(
            bound=sql.Literal(bound),
            zone=sql.Literal(settings.bank_timezone),
            earliest=sql.Literal(earliest_epoch(settings.earliest_plausible_date)),
        )
    return sql.Identifier(name)


def predicate(contract: Contract, rule: Rule, now: datetime) -> sql.Composable:
    """True when a row breaks `rule`, with the semantics of the GX expectation it becomes."""
    column = column_sql(contract, rule.column, now)
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
        other = column_sql(contract, rule.other_column or "", now)
        return sql.SQL("({c} is not null and {o} is not null and {c} > {o})").format(
            c=column, o=other
        )
    if rule.kind == "iban":
        return sql.SQL("({c} is not null and {c}::text in (select iban from {t}))").format(
            c=column, t=INVALID_IBANS
        )
    if rule.kind == "unique":
        # A window over the batch: every copy of a repeated key breaks it, as in GX.
        key = [sql.Identifier(k) for k in rule.key]
        return sql.SQL("({present} and count(*) over (partition by {key}) > 1)").format(
            present=sql.SQL(" and ").join(sql.SQL("{} is not null").format(k) for k in key),
            key=sql.SQL(", ").join(key),
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


def rules_broken(contract: Contract, now: datetime | None = None) -> sql.Composable:
    """text[] of the rules a row of the entity breaks, as SQL over a batch (window rules need
    the batch: use it in a select list over the batch's rows)."""
    now = now or datetime.now(UTC)
    names = sql.SQL(", ").join(
        sql.SQL("case when {} then {} end").format(
            predicate(contract, rule, now), sql.Literal(rule.name)
        )
        for rule in contract.checks
    )
    return sql.SQL("array_remove(array[{}]::text[], null)").format(names)


def quarantine_batch(
    conn: psycopg.Connection,
    contract: Contract,
    batch_id: int,
    rows_in: int,
    now: datetime,
    rules: list[Rule] | None = None,
    from_file: bool = False,
) -> tuple[int, dict[str, RuleStat]]:
    """Move this batch's rows that break the contract (or only `rules`) from raw into quarantine.

    `now` is the moment of judging: the source's clock when the batch was read. Rows of a feed
    file (`from_file`) keep their file and line in quarantine's own columns. Returns how many
    rows moved and, per rule, rows evaluated and failed.
    """
    entity = contract.entity
    if rules is not None:
        contract = replace(contract, checks=tuple(rules))
    raw = sql.Identifier("raw", entity)
    prepare_iban_check(conn, raw, sql.SQL("_batch_id = {}").format(sql.Literal(batch_id)), contract)
    dropped = [*RAW_METADATA, *(FILE_POSITION if from_file else ())]
    metadata = sql.SQL(" - ").join(sql.Literal(m) for m in dropped)
    position = [sql.SQL("m.{}").format(sql.Identifier(c)) for c in FILE_POSITION]
    if not from_file:
        position = [sql.NULL, sql.NULL]
    moved, failed = conn.execute(
        sql.SQL(
            """
            with judged as (
                select ctid as row_id, {broken_names} as rules
                from {raw} where _batch_id = {batch}
            ),
            moved as (
                delete from {raw} as r using judged as j
                where r._batch_id = {batch} and r.ctid = j.row_id and cardinality(j.rules) > 0
                returning r.*, j.rules as _rules
            ),
            kept as (
                insert into {quarantine}
                    (batch_id, record_source, source_file, source_line, payload, rules)
                select {batch}, m._record_source, {file}, {line},
                    to_jsonb(m) - '_rules' - {metadata}, m._rules
                from moved as m
                returning rules
            )
            select
                (select count(*) from kept),
                (select coalesce(jsonb_object_agg(rule, n), '{{}}')
                 from (select rule, count(*) as n from kept, unnest(rules) as rule group by rule)
                    as per_rule)
            """
        ).format(
            raw=raw,
            broken_names=rules_broken(contract, now),
            quarantine=sql.Identifier("quarantine", entity),
            batch=sql.Literal(batch_id),
            metadata=metadata,
            file=position[0],
            line=position[1],
        )
    ).fetchone()
    stats = {
        rule: RuleStat(rule, column, rows_in, failed.get(rule, 0))
        for rule, column, _ in contract.rules()
    }
    return moved, stats
