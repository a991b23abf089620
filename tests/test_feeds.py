"""Feed files (landing folder and S3) into raw: every line in raw or quarantine exactly once,
files never loaded twice, re-sent files versioned, malformed lines and drift handled."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import boto3
import psycopg
import pytest
from moto import mock_aws
from prefect_aws import AwsCredentials, S3Bucket
from typer.testing import CliRunner

from flows.cli import app
from flows.extract.feeds import extract_feeds_flow
from flows.quality.results import BatchRejectedError
from flows.settings import reset_settings
from flows.simulate import simulate

FEEDS = ("interactions", "opportunities", "orders")
# What the simulator's defects break in the feeds' contracts.
RULE_OF_DEFECT = {
    "unknown_channel": "channel_unknown",
    "missing_customer_id": "customer_id_missing",
    "probability_out_of_range": "probability_out_of_range",
    "negative_amount": "amount_out_of_range",
}
INTERACTION = {
    "interaction_id": 1,
    "customer_id": 10,
    "channel": "web",
    "interaction_type": "enquiry",
    "sentiment": 0.25,
    "occurred_at": "2026-01-01T09:00:00Z",
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GX home for the module, so the repository's .warehouse is left alone."""
    return tmp_path_factory.mktemp("feeds_data")


@pytest.fixture
def feeds_env(bank_factory, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh warehouse and source, and an empty landing folder the settings point at."""

    def create(name: str, reject_threshold: float = 0.05):  # type: ignore[no-untyped-def]
        bank = bank_factory(name)
        monkeypatch.setenv("REJECT_THRESHOLD", str(reject_threshold))
        landing = tmp_path / "landing"
        landing.mkdir()
        monkeypatch.setenv("LANDING_DIR", str(landing))
        monkeypatch.setenv("WAREHOUSE_DIR", str(data_dir))
        reset_settings()
        return bank, landing

    yield create
    monkeypatch.undo()
    reset_settings()


def data_lines(path: Path) -> int:
    lines = len(path.read_bytes().splitlines())
    return lines - 1 if path.suffix == ".csv" else lines


def lines_per_feed(landing: Path) -> Counter[str]:
    return Counter(
        {feed: sum(data_lines(p) for p in (landing / feed).glob("*.*")) for feed in FEEDS}
    )


def scalar(url: str, query: str, params: tuple = ()) -> object:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def stored_per_feed(url: str) -> tuple[Counter[str], Counter[str]]:
    raw, quarantined = Counter(), Counter()
    for feed in FEEDS:
        raw[feed] = scalar(url, f"select count(*) from raw.{feed}")
        quarantined[feed] = scalar(url, f"select count(*) from quarantine.{feed}")
    return raw, quarantined


def line_as_record(landing: Path, name: str, line_no: int) -> dict:  # type: ignore[type-arg]
    lines = (landing / name).read_text().splitlines()
    if name.endswith(".csv"):
        header = next(csv.reader([lines[0]]))
        fields = next(csv.reader([lines[line_no - 1]]))
        return {h: v or None for h, v in zip(header, fields, strict=True)}
    return json.loads(lines[line_no - 1])


def write_lines(path: Path, lines: list[bytes], last_newline: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + (b"\n" if last_newline else b""))


def interaction(**changes: object) -> bytes:
    return json.dumps({**INTERACTION, **changes}).encode()


def test_landing_files_load_once_every_line_exactly_once(feeds_env):
    bank, landing = feeds_env("feeds_landing", reject_threshold=1.0)
    sim = simulate(bank.source_url, 5, scale=200, seed=7, bad_rate=0.05, landing_dir=landing)
    assert sum(sim.feed_bad_lines.values()) > 0

    results = extract_feeds_flow().batches

    url = bank.warehouse_url
    names = {p.relative_to(landing).as_posix() for p in landing.rglob("*.*")}
    assert len(results) == len(names) == 15
    raw, quarantined = stored_per_feed(url)
    lines = lines_per_feed(landing)
    assert lines == Counter(sim.feed_lines)
    for feed in FEEDS:
        assert raw[feed] + quarantined[feed] == lines[feed], feed
        expected = Counter(
            {
                RULE_OF_DEFECT[key.split(".")[1]]: n
                for key, n in sim.feed_bad_lines.items()
                if key.startswith(f"{feed}.")
            }
        )
        got = Counter(
            r[0]
            for r in rows(url, f"select unnest(rules) from quarantine.{feed}")  # noqa: S608
        )
        assert got == expected, feed
    # Quarantined rows point at their line: the payload is that line's record.
    for feed in FEEDS:
        for name, line_no, payload in rows(
            url, f"select source_file, source_line, payload from quarantine.{feed}"
        ):
            assert payload == line_as_record(landing, name, line_no)
        assert scalar(url, f"select count(*) from raw.{feed} where _source_file is null") == 0
        assert {r[0] for r in rows(url, f"select distinct _source_file from raw.{feed}")} <= names
    # The CSV's header is line 1: data starts at line 2.
    assert scalar(url, "select min(_source_line) from raw.orders") == 2
    assert rows(url, "select source, entity from ops.batches group by 1, 2 order by 2") == [
        ("crm", "interactions"),
        ("crm", "opportunities"),
        ("crm", "orders"),
    ]
    assert scalar(url, "select count(*) from ops.files where version = 1") == 15
    assert scalar(url, "select count(*) from ops.batches where source_file is null") == 0
    # Batches of a feed follow the files' name order.
    order = [
        r[0]
        for r in rows(url, "select name from ops.files where entity = 'orders' order by batch_id")
    ]
    assert order == sorted(order)

    # A second run finds nothing new: no batch, no row.
    batches = scalar(url, "select count(*) from ops.batches")
    assert extract_feeds_flow().batches == []
    assert scalar(url, "select count(*) from ops.batches") == batches
    assert stored_per_feed(url) == (raw, quarantined)

    # One file re-sent under its name with one more line: its new version loads, whole.
    resent = landing / "interactions" / "interactions_2026-01-02.jsonl"
    name = "interactions/interactions_2026-01-02.jsonl"
    count_raw = "select count(*) from raw.interactions where _source_file = %s"
    count_quarantined = "select count(*) from quarantine.interactions where source_file = %s"
    before = scalar(url, count_raw, (name,)), scalar(url, count_quarantined, (name,))
    with resent.open("ab") as fh:
        fh.write(interaction(interaction_id=999_999) + b"\n")
    results = extract_feeds_flow().batches
    assert len(results) == 1
    (result,) = results
    assert result.source_file == name
    assert result.file_version == 2 and result.resent
    assert "version 2" in result.describe_resend()
    assert result.rows_in == data_lines(resent)
    assert scalar(url, count_raw, (name,)) == 2 * before[0] + 1
    assert scalar(url, count_quarantined, (name,)) == 2 * before[1]
    assert rows(
        url,
        "select version from ops.files where name = %s order by version",
        (result.source_file,),
    ) == [(1,), (2,)]


def test_malformed_lines_are_quarantined_with_line_and_rule(feeds_env):
    bank, landing = feeds_env("feeds_malformed", reject_threshold=0.9)
    write_lines(
        landing / "interactions" / "interactions_2026-01-01.jsonl",
        [
            interaction(interaction_id=1),  # 1
            b'{"interaction_id": 2, "customer_id": ',  # 2 broken JSON
            interaction(interaction_id=3, channel="caf\xe9").replace(b"\\u00e9", b"\xe9\xff"),  # 3
            b"[1, 2, 3]",  # 4 not an object
            interaction(interaction_id=5, channel="web\x00"),  # 5 NUL via an escape
            interaction(interaction_id=6.5),  # 6 no bigint
            interaction(interaction_id=7, occurred_at="not a time"),  # 7
            interaction(interaction_id=8, sentiment=None),  # 8 good (NULL sentiment)
            b'{"interaction_id": 9, "customer_id": 1, "chan',  # 9 truncated, no newline
        ],
        last_newline=False,
    )
    write_lines(
        landing / "orders" / "orders_2026-01-01.csv",
        [
            b"order_id,customer_id,product_id,channel,status,amount,ordered_at,updated_at",
            b"1,10,CUR-STD,web,placed,10.50,2026-01-01T10:00:00Z,2026-01-01T10:00:00Z",  # 2
            b"2,10,CUR-STD,web,placed,10.50,2026-01-01T10:00:00Z",  # 3 a column short
            b"3,10,CUR-\xff\xfe,web,placed,1.00,2026-01-01T10:00:00Z,2026-01-01T10:00:00Z",  # 4
            b"4,11,CUR-STD,app,approved,99.99,2026-01-01T10:00:00Z,2026-01-01T11:00:00Z",  # 5
        ],
    )

    results = extract_feeds_flow().batches

    url = bank.warehouse_url
    assert {r.entity: (r.rows_in, r.rows_loaded, r.rows_quarantined) for r in results} == {
        "interactions": (9, 2, 7),
        "orders": (4, 2, 2),
    }
    quarantined = rows(
        url, "select source_line, rules, payload from quarantine.interactions order by 1"
    )
    assert [(line, rules) for line, rules, _ in quarantined] == [
        (2, ["malformed_json"]),
        (3, ["bad_encoding"]),
        (4, ["not_an_object"]),
        (5, ["invalid_character"]),
        (6, ["interaction_id_not_an_integer"]),
        (7, ["occurred_at_not_a_timestamp"]),
        (9, ["malformed_json"]),
    ]
    assert quarantined[0][2] == {"_line": '{"interaction_id": 2, "customer_id": '}
    assert "\ufffd" in quarantined[1][2]["_line"]
    assert quarantined[4][2]["interaction_id"] == 6.5  # a contract breach keeps the record
    assert rows(url, "select interaction_id, _source_line from raw.interactions order by 1") == [
        (1, 1),
        (8, 8),
    ]
    assert rows(url, "select source_line, rules from quarantine.orders order by 1") == [
        (3, ["wrong_column_count"]),
        (4, ["bad_encoding"]),
    ]
    assert rows(url, "select order_id, _source_line from raw.orders order by 1") == [(1, 2), (4, 5)]
    dq = dict(rows(url, "select rule, failed from ops.dq_results where entity = 'interactions'"))
    assert dq["malformed_json"] == 2 and dq["bad_encoding"] == 1


def test_feed_dates_outside_the_plausible_range_are_quarantined(feeds_env):
    bank, landing = feeds_env("feeds_dates", reject_threshold=1.0)
    header = b"order_id,customer_id,product_id,channel,status,amount,ordered_at,updated_at"
    write_lines(
        landing / "orders" / "orders_2026-01-01.csv",
        [
            header,
            b"1,10,CUR-STD,web,placed,1.00,2026-01-01T10:00:00Z,2026-01-01T10:00:00Z",  # 2
            b"2,10,CUR-STD,web,placed,1.00,10000-01-01T10:00:00Z,2026-01-01T10:00:00Z",  # 3
            b"3,10,CUR-STD,web,placed,1.00,0001-01-01T10:00:00Z,2026-01-01T10:00:00Z",  # 4
            b"4,10,CUR-STD,web,placed,1.00,2026-01-01T10:00:00Z,0001-01-01T10:00:00Z",  # 5
            b"5,10,CUR-STD,web,placed,1.00,2026-01-01T10:00:00Z,10000-01-01T10:00:00Z",  # 6
            b"6,10,CUR-STD,web,placed,1.00,infinity,2026-01-01T10:00:00Z",  # 7
        ],
    )
    write_lines(
        landing / "opportunities" / "opportunities_2026-01-01.jsonl",
        [
            json.dumps(
                {
                    "opportunity_id": opportunity_id,
                    "customer_id": 10,
                    "product_code": "SAV-EASY",
                    "stage": "prospect",
                    "amount": 100,
                    "probability": 0.1,
                    "created_at": created_at,
                    "updated_at": "2026-01-01T10:00:00Z",
                }
            ).encode()
            for opportunity_id, created_at in (
                (1, "0001-01-01T00:00:00Z"),
                (2, "10000-01-01T00:00:00Z"),
            )
        ],
    )

    extract_feeds_flow()

    url = bank.warehouse_url
    assert rows(url, "select source_line, rules from quarantine.orders order by 1") == [
        (3, ["ordered_at_in_future"]),
        (4, ["ordered_at_too_early"]),
        (5, ["updated_at_too_early"]),
        (6, ["updated_at_in_future"]),
        (7, ["ordered_at_in_future"]),
    ]
    assert rows(url, "select order_id from raw.orders") == [(1,)]
    assert rows(url, "select source_line, rules from quarantine.opportunities order by 1") == [
        (1, ["created_at_too_early"]),
        (2, ["created_at_in_future"]),
    ]
    # What reached raw can be read back: `bankdw sql` broke on a timestamp in year 10000.
    result = CliRunner().invoke(app, ["sql", "select * from raw.orders"])
    assert result.exit_code == 0, result.output


def test_file_over_the_threshold_is_rejected_whole(feeds_env, monkeypatch):
    bank, landing = feeds_env("feeds_rejected")
    monkeypatch.setenv("REJECT_MIN_ROWS", "1")  # judge even a 10-line file
    reset_settings()
    folder = landing / "interactions"
    bad = [interaction(interaction_id=i, channel="fax" if i % 2 else "web") for i in range(1, 11)]
    write_lines(folder / "interactions_2026-01-01.jsonl", bad)
    good = [interaction(interaction_id=i) for i in range(11, 21)]
    write_lines(folder / "interactions_2026-01-02.jsonl", good)

    with pytest.raises(BatchRejectedError, match="interactions: 5 of 10 rows"):
        extract_feeds_flow()

    url = bank.warehouse_url
    name = "interactions/interactions_2026-01-01.jsonl"
    # The later file still loaded; nothing of the refused one did.
    assert rows(url, "select distinct _source_file from raw.interactions") == [
        ("interactions/interactions_2026-01-02.jsonl",)
    ]
    assert scalar(url, "select count(*) from quarantine.interactions") == 0
    assert scalar(url, "select count(*) from ops.files where name = %s", (name,)) == 0
    failed = rows(
        url,
        "select batch_id, error from ops.batches where status = 'failed' and source_file = %s",
        (name,),
    )
    assert len(failed) == 1, "a refused file is not retried"
    batch_id, error = failed[0]
    assert error.startswith("BatchRejectedError")
    assert rows(
        url,
        "select rule, failed from ops.dq_results where batch_id = %s and failed > 0",
        (batch_id,),
    ) == [("channel_unknown", 5)]
    assert scalar(url, "select count(*) from ops.alerts where batch_id = %s", (batch_id,)) == 1


def test_new_field_is_kept_in_extras_and_reported(feeds_env):
    bank, landing = feeds_env("feeds_drift")
    folder = landing / "interactions"
    write_lines(folder / "interactions_2026-01-01.jsonl", [interaction(interaction_id=1)])
    assert [r.drift for r in extract_feeds_flow().batches] == [None]
    write_lines(
        folder / "interactions_2026-01-02.jsonl",
        [interaction(interaction_id=2), interaction(interaction_id=3, agent_id=7)],
    )

    (result,) = extract_feeds_flow().batches

    url = bank.warehouse_url
    assert result.drift == "interactions v2: +agent_id"
    assert rows(url, "select interaction_id, _extras from raw.interactions order by 1") == [
        (1, None),
        (2, None),
        (3, {"agent_id": 7}),
    ]
    assert rows(
        url,
        "select version, added_columns from ops.schema_versions "
        "where source = 'crm' and entity = 'interactions' order by 1",
    ) == [(1, []), (2, ["agent_id"])]


def test_s3_objects_load_like_landing_files(feeds_env, monkeypatch):
    bank, landing = feeds_env("feeds_s3", reject_threshold=1.0)
    sim = simulate(bank.source_url, 3, scale=200, seed=5, bad_rate=0.05, landing_dir=landing)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="feeds")
        keys = set()
        for path in landing.rglob("*.*"):
            key = f"landing/{path.relative_to(landing).as_posix()}"
            client.upload_file(str(path), "feeds", key)
            keys.add(key)
        client.put_object(Bucket="feeds", Key="landing/readme.txt", Body=b"not a feed")
        bucket = S3Bucket(
            bucket_name="feeds",
            credentials=AwsCredentials(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            ),
        )

        results = extract_feeds_flow(source="s3", bucket=bucket).batches
        again = extract_feeds_flow(source="s3", bucket=bucket).batches

    url = bank.warehouse_url
    assert len(results) == len(keys) == 9 and again == []
    raw, quarantined = stored_per_feed(url)
    for feed in FEEDS:
        assert raw[feed] + quarantined[feed] == sim.feed_lines[feed]
    assert sum(quarantined.values()) == sum(sim.feed_bad_lines.values())
    assert {r[0] for r in rows(url, "select name from ops.files where source = 's3'")} == keys
    stored_files = {
        r[0]
        for feed in FEEDS
        for r in rows(
            url,
            f"select _source_file from raw.{feed} union select source_file from quarantine.{feed}",
        )
    }
    assert stored_files == {k for k in keys if data_lines(landing / k.removeprefix("landing/"))}


def test_bucket_from_settings_uses_minio_when_an_endpoint_is_set(monkeypatch):
    from prefect_aws import MinIOCredentials

    from flows.extract.s3 import s3_bucket_from_settings

    monkeypatch.setenv("S3_BUCKET", "bankdw-feeds")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "minio-user")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "minio-secret")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000")
    reset_settings()
    bucket = s3_bucket_from_settings()
    assert isinstance(bucket.credentials, MinIOCredentials)
    assert bucket.credentials.minio_root_user == "minio-user"
    assert bucket.credentials.aws_client_parameters.endpoint_url == "http://minio:9000"

    monkeypatch.delenv("S3_ENDPOINT_URL")
    reset_settings()
    bucket = s3_bucket_from_settings()
    assert isinstance(bucket.credentials, AwsCredentials)
    assert bucket.credentials.region_name == "eu-west-2"
    monkeypatch.undo()
    reset_settings()
