"""Every maintained PostgreSQL major (14 onward): the version check at connect, and
`ops.input_is_valid`, which stands in for PostgreSQL 16's pg_input_is_valid on feed values.

`make test` runs this on the embedded PostgreSQL 16, `make test-pg15` on PostgreSQL 15.
"""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.extract.files import TYPE_RULE_SUFFIX
from flows.load import apply_ops_schema
from flows.retries import retry_unless_refused
from flows.settings import Settings
from flows.warehouse import (
    PgParams,
    UnsupportedServerError,
    check_server_version,
    connect_source,
    connect_warehouse,
)

REMOTE = PgParams("db.internal", 5433, "bankdw", "s3cret-pw", "warehouse")


def test_a_server_below_14_is_refused_with_a_message_naming_it():
    with pytest.raises(UnsupportedServerError) as caught:
        check_server_version(130011, "warehouse", REMOTE)
    message = str(caught.value)
    assert message == (
        "the warehouse (host db.internal, port 5433, database warehouse) runs PostgreSQL 13.11; "
        "bankdw needs PostgreSQL 14 or later"
    )
    assert "s3cret" not in message


def test_versions_before_10_are_written_with_three_parts():
    with pytest.raises(UnsupportedServerError, match=r"source .* runs PostgreSQL 9\.6\.24;"):
        check_server_version(90624, "source", REMOTE)


def test_14_and_later_pass():
    for version_num in (140000, 150018, 160002, 170000):
        check_server_version(version_num, "warehouse", REMOTE)


def test_an_old_server_is_not_retried():
    class Failed:
        def result(self):
            raise UnsupportedServerError("too old")

    assert retry_unless_refused(None, None, Failed()) is False


@pytest.fixture(scope="module")
def conn(new_database):
    with psycopg.connect(new_database("versions"), autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        apply_ops_schema(conn)
        yield conn


def test_the_test_server_passes_for_warehouse_and_source(new_database):
    setup = Settings(warehouse_url=new_database("wh_version"), source_url=new_database("src"))
    for connect in (connect_warehouse, connect_source):
        with connect(setup) as conn:
            assert conn.info.server_version >= 140000


# (type, value, valid) with the same answer on PostgreSQL 14, 15 and 16. Left out: what 16 newly
# accepts as integers ('0x1F', '1_000'); the contract's `<col>_not_a_number` refuses those first.
CASES = [
    ("bigint", "42", True),
    ("bigint", " -7 ", True),
    ("bigint", "9223372036854775807", True),
    ("bigint", "9223372036854775808", False),  # out of range: 22003
    ("bigint", "1.5", False),
    ("bigint", "1e3", False),
    ("bigint", "", False),
    ("bigint", "abc", False),
    ("numeric", "3.14", True),
    ("numeric", "-0.5e-3", True),
    ("numeric", "NaN", True),
    ("numeric", "Infinity", True),
    ("numeric", "1,5", False),
    ("numeric", ".", False),
    ("numeric", "1e1000000", False),  # overflows numeric
    ("timestamp with time zone", "2026-01-01 10:00:00+00", True),
    ("timestamp with time zone", "2026-01-01T10:00:00.123456Z", True),
    ("timestamp with time zone", "infinity", True),
    ("timestamp with time zone", "2026-02-30 00:00", False),  # field out of range: 22008
    ("timestamp with time zone", "2026-01-01 25:00", False),
    ("timestamp with time zone", "2026-01-01 10:00 Mars/Olympus", False),  # unknown zone: 22023
    ("timestamp with time zone", "yesterday-ish", False),
    ("date", "2024-02-29", True),
    ("date", "20260101", True),
    ("date", "2026-02-29", False),
    ("date", "5874898-01-01", False),  # beyond the last date
    ("date", "", False),
    ("boolean", " TRUE ", True),
    ("boolean", "tr", True),  # a unique prefix
    ("boolean", "off", True),
    ("boolean", "0", True),
    ("boolean", "maybe", False),
    ("boolean", "2", False),
]


def test_input_is_valid_knows_every_type_a_feed_column_has(conn):
    for type_name in TYPE_RULE_SUFFIX:
        conn.execute("select ops.input_is_valid('1', %s)", (type_name,))
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="varchar"):
        conn.execute("select ops.input_is_valid('1', 'varchar')")


def test_input_is_valid_answers_the_same_on_every_version(conn):
    answers = [
        conn.execute("select ops.input_is_valid(%s, %s)", (value, type_name)).fetchone()[0]
        for type_name, value, _ in CASES
    ]
    assert answers == [valid for _, _, valid in CASES]
    assert conn.execute("select ops.input_is_valid(null, 'bigint')").fetchone()[0] is None


def test_input_is_valid_agrees_with_pg_input_is_valid(conn):
    """On PostgreSQL 16 and later, pg_input_is_valid is the reference, on any text."""
    if conn.info.server_version < 160000:
        pytest.skip("pg_input_is_valid is PostgreSQL 16's")

    def disagreements(values: list[str], type_name: str) -> list[str]:
        return [
            v
            for (v,) in conn.execute(
                "select v from unnest(%s::text[]) as v"
                " where ops.input_is_valid(v, %s) is distinct from pg_input_is_valid(v, %s)",
                (values, type_name, type_name),
            )
        ]

    extra = ["0x1F", "1_000", "0o17", "+5", "1e-400", "Jan 5 2026", "epoch", "now", "allballs"]
    for type_name in TYPE_RULE_SUFFIX:
        assert disagreements([v for _, v, _ in CASES] + extra, type_name) == [], type_name

    text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
    numberish = st.from_regex(r"\A[-+ ]?[0-9_.,eExXa-f]{0,12} ?\Z")
    datish = st.from_regex(
        r"\A[0-9]{1,6}-[0-9]{1,2}-[0-9]{1,2}( [0-9:.]{1,12})?( ?[-+Z][0-9:]*)?\Z"
    )

    @settings(
        max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(values=st.lists(text | numberish | datish, max_size=40))
    def agree(values: list[str]) -> None:
        for type_name in TYPE_RULE_SUFFIX:
            assert disagreements(values, type_name) == [], type_name

    agree()
