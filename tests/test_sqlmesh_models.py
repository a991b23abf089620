"""SQLMesh's own unit tests (tests/sqlmesh/*.yaml) on Postgres; the hash-key macro's properties."""

from __future__ import annotations

import unicodedata

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from flows import transform
from macros.hashing import _hash


def test_sqlmesh_yaml_unit_tests_pass(bank_factory):
    bank_factory("unit")
    context = transform.open_context()
    try:
        result = context.test()
    finally:
        context.close()
    assert result.testsRun >= 2
    assert result.wasSuccessful(), [str(e) for _, e in result.failures + result.errors]


# Hash keys, checked on Postgres against a plain-Python statement of the contract.
KEY_TEXT = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=127), max_size=6),
    st.sampled_from(["", " ", "a", "A", " a ", "a|", "|a", "\x1f", "\x1e", "NULL", "a\tb"]),
)


def normalised(part: str | None) -> str | None:
    """The contract: control characters dropped, spaces trimmed, upper-cased, empty = NULL."""
    if part is None:
        return None
    kept = "".join(ch for ch in part if unicodedata.category(ch) != "Cc").strip(" ").upper()
    return kept or None


@pytest.fixture(scope="module")
def hash_conn(new_database):
    with psycopg.connect(new_database("hash"), autocommit=True) as conn:
        yield conn


def sql_hash(conn: psycopg.Connection, parts: tuple[str | None, ...]) -> str:
    placeholders = tuple(
        exp.Cast(this=exp.Placeholder(), to=exp.DataType.build("text")) for _ in parts
    )
    query = "select " + _hash(placeholders, upper=True).replace("?", "%s")
    return conn.execute(query, parts).fetchone()[0]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(a=st.tuples(KEY_TEXT, KEY_TEXT), b=st.tuples(KEY_TEXT, KEY_TEXT))
def test_hash_key_equal_exactly_when_normalised_keys_equal(hash_conn, a, b):
    same_key = tuple(map(normalised, a)) == tuple(map(normalised, b))
    assert (sql_hash(hash_conn, a) == sql_hash(hash_conn, b)) == same_key


def test_hash_key_fixed_cases(hash_conn):
    assert sql_hash(hash_conn, ("a|", "b")) != sql_hash(hash_conn, ("a", "|b"))
    assert (
        sql_hash(hash_conn, (None,))
        == sql_hash(hash_conn, ("  ",))
        != sql_hash(hash_conn, ("NULL",))
    )
    assert sql_hash(hash_conn, (" gb29 ",)) == sql_hash(hash_conn, ("GB29",))
    assert len(sql_hash(hash_conn, ("x",))) == 32
