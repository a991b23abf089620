"""The landing folder, safe by default: nothing outside it is read, the same bytes load once
whatever their name, files count only once complete (the landing protocol), CSV is read as RFC
4180, unrecognised files are reported, a re-sent file is not drift, and discovery reads the
ledger instead of the files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import boto3
import psycopg
import pytest
from moto import mock_aws
from prefect_aws import AwsCredentials, S3Bucket
from typer.testing import CliRunner

from flows.cli import app, print_notes
from flows.extract.discovery import discover_landing
from flows.extract.feeds import extract_feeds_flow
from flows.extract.files import load_feed_file
from flows.extract.landing import SetAsideError
from flows.pipeline import Extraction, report_extraction
from flows.quality.replay import replay
from flows.settings import reset_settings
from flows.summary import RunSummary

ORDERS_HEADER = b"order_id,customer_id,product_id,channel,status,amount,ordered_at,updated_at"


def order(order_id: int, amount: str = "10.00", channel: str = "web") -> bytes:
    stamp = "2026-01-03T10:00:00Z"
    return f"{order_id},10,CUR-STD,{channel},placed,{amount},{stamp},{stamp}".encode()


def interaction(interaction_id: int, **changes: object) -> bytes:
    record = {
        "interaction_id": interaction_id,
        "customer_id": 10,
        "channel": "web",
        "interaction_type": "enquiry",
        "sentiment": 0.25,
        "occurred_at": "2026-01-01T09:00:00Z",
    }
    return json.dumps({**record, **changes}).encode()


def write(path: Path, lines: list[bytes], ending: bytes = b"\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + ending for line in lines))
    return path


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def scalar(url: str, query: str, params: tuple = ()) -> object:  # type: ignore[type-arg]
    return rows(url, query, params)[0][0]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("landing_data")


@pytest.fixture
def landing_env(bank_factory, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh warehouse and an empty landing folder the settings point at."""

    def create(name: str, **settings: str):  # type: ignore[no-untyped-def]
        bank = bank_factory(name)
        landing = tmp_path / "landing"
        landing.mkdir()
        monkeypatch.setenv("LANDING_DIR", str(landing))
        monkeypatch.setenv("WAREHOUSE_DIR", str(data_dir))
        monkeypatch.setenv("REJECT_THRESHOLD", "1.0")
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        reset_settings()
        return bank.warehouse_url, landing

    yield create
    monkeypatch.undo()
    reset_settings()


def reasons(run) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {i.name: i.reason for i in run.ignored}


# ---------------------------------------------------------------- 5: nothing outside is read


def test_links_out_of_the_landing_folder_are_refused_and_reported(landing_env, tmp_path):
    url, landing = landing_env("landing_links")
    elsewhere = tmp_path / "elsewhere"
    secret = write(elsewhere / "secret.csv", [ORDERS_HEADER, b"SECRET,line,of,another,system"])
    write(elsewhere / "feed" / "interactions_2026-01-01.jsonl", [interaction(1)])
    write(landing / "orders" / "orders_2026-01-03.csv", [ORDERS_HEADER, order(1)])
    (landing / "orders" / "orders_2026-01-04.csv").symlink_to(secret)
    (landing / "interactions").symlink_to(elsewhere / "feed", target_is_directory=True)

    run = extract_feeds_flow()

    assert [b.source_file for b in run.batches] == ["orders/orders_2026-01-03.csv"]
    assert reasons(run) == {"orders/orders_2026-01-04.csv": "symlink", "interactions": "symlink"}
    assert scalar(url, "select count(*) from raw.orders") == 1
    assert scalar(url, "select count(*) from quarantine.orders") == 0
    assert scalar(url, "select to_regclass('raw.interactions')") is None
    assert rows(url, "select name, reason from ops.ignored_files order by name") == [
        ("interactions", "symlink"),
        ("orders/orders_2026-01-04.csv", "symlink"),
    ]
    alerts = rows(url, "select entity, message from ops.alerts order by entity")
    assert [entity for entity, _ in alerts] == ["interactions", "orders"]
    assert "symbolic link" in alerts[1][1] and "orders_2026-01-04.csv" in alerts[1][1]
    listing = CliRunner().invoke(app, ["quarantine", "list"])
    assert listing.exit_code == 0 and "SECRET" not in listing.output

    # Still refused next time, without a second alert.
    assert reasons(extract_feeds_flow()) == reasons(run)
    assert scalar(url, "select count(*) from ops.alerts") == 2


def test_a_link_swapped_in_after_the_listing_is_refused(landing_env, tmp_path):
    url, landing = landing_env("landing_swap")
    secret = write(tmp_path / "secret.csv", [ORDERS_HEADER, order(99)])
    path = write(landing / "orders" / "orders_2026-01-03.csv", [ORDERS_HEADER, order(1)])
    with psycopg.connect(url, autocommit=True) as conn:
        discovery = discover_landing(conn, landing)
        (listed,) = discovery.files["orders"]
        path.unlink()
        path.symlink_to(secret)
        with pytest.raises(SetAsideError, match="symbolic link") as refused:
            load_feed_file(conn, listed, "crm")
    assert refused.value.ignored.reason == "symlink"
    assert scalar(url, "select count(*) from ops.files") == 0
    assert scalar(url, "select to_regclass('raw.orders')") is None


# ---------------------------------------------------------------- 6: the same bytes load once


def test_the_same_bytes_under_a_second_name_are_not_loaded_again(landing_env):
    url, landing = landing_env("landing_copies")
    first = write(
        landing / "orders" / "orders_2026-01-03.csv", [ORDERS_HEADER, *map(order, (1, 2, 3, 4))]
    )
    assert len(extract_feeds_flow().batches) == 1
    copy = landing / "orders" / "orders_2026-01-03 (1).csv"
    shutil.copyfile(first, copy)

    run = extract_feeds_flow()

    assert run.batches == []
    (repeat,) = run.repeated
    assert (repeat.name, repeat.same_as) == (
        "orders/orders_2026-01-03 (1).csv",
        "orders/orders_2026-01-03.csv",
    )
    assert scalar(url, "select count(*) from raw.orders") == 4
    assert rows(url, "select name, status, repeat_of from ops.files order by loaded_at") == [
        ("orders/orders_2026-01-03.csv", "loaded", None),
        ("orders/orders_2026-01-03 (1).csv", "repeat", "orders/orders_2026-01-03.csv"),
    ]
    summary = RunSummary()
    report_extraction(summary, Extraction(run.batches, run))
    assert summary.repeated == [repeat.describe()] and "not loaded again" in repeat.describe()

    # Reported once: the next run finds the ledger knows the copy as it is.
    again = extract_feeds_flow()
    assert (again.batches, again.repeated, again.files_read) == ([], [], 0)

    # The same bytes sent again under the first name (a new modification time): a repeat too.
    os.utime(first, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))
    (repeat,) = extract_feeds_flow().repeated
    assert (repeat.name, repeat.same_as, repeat.same_as_version) == (
        "orders/orders_2026-01-03.csv",
        "orders/orders_2026-01-03.csv",
        1,
    )
    assert scalar(url, "select count(*) from raw.orders") == 4


def test_files_with_no_record_are_each_their_own_delivery(landing_env):
    """A quiet day's file is a header alone, the same bytes every quiet day: each one loads."""
    url, landing = landing_env("landing_empty_days")
    for day in ("2026-01-03", "2026-01-04"):
        write(landing / "orders" / f"orders_{day}.csv", [ORDERS_HEADER])
        write(landing / "interactions" / f"interactions_{day}.jsonl", [])

    run = extract_feeds_flow()

    assert len(run.batches) == 4 and run.repeated == []
    assert scalar(url, "select count(*) from ops.files where status = 'loaded'") == 4


# ---------------------------------------------------------------- 7: the landing protocol


def test_a_file_counts_only_once_renamed_into_place(landing_env):
    url, landing = landing_env("landing_protocol")
    folder = landing / "orders"
    # Being written, as the simulator and SFTP clients do: under a temporary name.
    write(folder / ".orders_2026-01-03.csv.tmp", [ORDERS_HEADER, order(1)])
    write(folder / "orders_2026-01-04.csv.part", [ORDERS_HEADER, order(2)])

    run = extract_feeds_flow()

    assert run.batches == []
    assert reasons(run) == {
        "orders/.orders_2026-01-03.csv.tmp": "hidden",
        "orders/orders_2026-01-04.csv.part": "temporary",
    }
    os.replace(folder / ".orders_2026-01-03.csv.tmp", folder / "orders_2026-01-03.csv")
    os.replace(folder / "orders_2026-01-04.csv.part", folder / "orders_2026-01-04.csv")
    run = extract_feeds_flow()
    assert [b.rows_loaded for b in run.batches] == [1, 1] and run.ignored == []
    # Renamed and taken: no longer ignored.
    assert scalar(url, "select count(*) from ops.ignored_files") == 0


def test_a_file_still_being_written_loads_nothing_until_it_holds_still(landing_env):
    url, landing = landing_env("landing_growing")
    path = landing / "orders" / "orders_2026-01-03.csv"
    # A sender breaking the protocol: writing under the final name, cut mid-line.
    path.parent.mkdir(parents=True)
    path.write_bytes(ORDERS_HEADER + b"\n" + order(1) + b"\n" + order(2)[:12])
    with psycopg.connect(url, autocommit=True) as conn:
        (listed,) = discover_landing(conn, landing).files["orders"]
        with path.open("ab") as fh:  # the sender goes on after the listing
            fh.write(order(2)[12:] + b"\n" + order(3) + b"\n")
        with pytest.raises(SetAsideError, match="still being written") as set_aside:
            load_feed_file(conn, listed, "crm")
    assert set_aside.value.ignored.reason == "changing"
    assert scalar(url, "select count(*) from ops.files") == 0
    assert scalar(url, "select count(*) from ops.batches where status = 'committed'") == 0

    (batch,) = extract_feeds_flow().batches

    assert (batch.rows_in, batch.rows_loaded, batch.rows_quarantined) == (3, 3, 0)
    assert scalar(url, "select count(*) from quarantine.orders") == 0


def test_a_quiet_period_holds_back_files_modified_just_now(landing_env):
    url, landing = landing_env("landing_quiet", LANDING_QUIET_SECONDS="3600")
    path = write(landing / "orders" / "orders_2026-01-03.csv", [ORDERS_HEADER, order(1)])

    run = extract_feeds_flow()

    assert run.batches == [] and reasons(run) == {"orders/orders_2026-01-03.csv": "quiet_period"}
    hour_ago = (path.stat().st_mtime_ns - 3_700 * 10**9,) * 2
    os.utime(path, ns=hour_ago)
    assert [b.rows_loaded for b in extract_feeds_flow().batches] == [1]


# ---------------------------------------------------------------- 8: CSV as RFC 4180


def test_csv_records_may_hold_line_breaks_and_keep_the_line_they_start_on(landing_env):
    url, landing = landing_env("landing_csv")
    write(
        landing / "orders" / "orders_2026-01-03.csv",
        [
            ORDERS_HEADER + b",note",  # 1
            order(1) + b',"first line\r\nsecond line"',  # 2-3
            order(2) + b',"say ""hi"", then go"',  # 4
            order(3, channel='"web\nsite"') + b",x",  # 5-6: breaks channel_unknown
            order(4) + b',"stray"quote',  # 7: not CSV
            order(5) + b",ok",  # 8
        ],
        ending=b"\r\n",
    )

    (batch,) = extract_feeds_flow().batches

    assert (batch.rows_in, batch.rows_loaded, batch.rows_quarantined) == (5, 3, 2)
    assert rows(
        url, "select order_id, _source_line, _extras ->> 'note' from raw.orders order by 1"
    ) == [(1, 2, "first line\r\nsecond line"), (2, 4, 'say "hi", then go'), (5, 8, "ok")]
    quarantined = rows(
        url, "select source_line, rules, payload from quarantine.orders order by source_line"
    )
    assert [(line, rules) for line, rules, _ in quarantined] == [
        (5, ["channel_unknown"]),
        (7, ["malformed_csv"]),
    ]
    assert quarantined[0][2]["channel"] == "web\nsite"  # a record, so a steward can fix it
    assert quarantined[1][2] == {"_line": order(4).decode() + ',"stray"quote'}

    with psycopg.connect(url) as conn:
        conn.execute(
            "update quarantine.orders set payload = jsonb_set(payload, '{channel}', '\"web\"') "
            "where source_line = 5"
        )
        conn.commit()
        assert replay(conn, "orders").replayed == 1
    assert rows(url, "select _source_line, channel from raw.orders where order_id = 3") == [
        (5, "web")
    ]


# ---------------------------------------------------------------- 9: ignored files, with why


def test_files_the_loader_does_not_recognise_are_reported_with_why(landing_env, capsys):
    url, landing = landing_env("landing_ignored")
    write(landing / "orders" / "2026" / "orders_2026-01-03.csv", [ORDERS_HEADER, order(1)])
    write(landing / "orders" / "notes.txt", [b"call the branch"])
    write(landing / "orders" / ".DS_Store", [b"\x00"])
    write(landing / "orders" / ".archive" / "orders_2025-12-31.csv", [ORDERS_HEADER, order(9)])
    write(landing / "payments" / "payments_2026-01-03.csv", [b"id", b"1"])
    write(landing / "orders_2026-01-05.csv", [ORDERS_HEADER, order(5)])
    os.mkfifo(landing / "orders" / "orders_2026-01-06.csv")

    run = extract_feeds_flow()

    assert [b.source_file for b in run.batches] == ["orders/2026/orders_2026-01-03.csv"]
    expected = {
        "orders/notes.txt": "unknown_extension",
        "orders/.DS_Store": "hidden",
        "orders/.archive/": "hidden",
        "orders/orders_2026-01-06.csv": "not_a_file",
        "payments/": "not_in_a_feed",
        "orders_2026-01-05.csv": "not_in_a_feed",
    }
    assert reasons(run) == expected
    assert dict(rows(url, "select name, reason from ops.ignored_files")) == expected
    summary = RunSummary()
    report_extraction(summary, Extraction(run.batches, run))
    capsys.readouterr()
    print_notes(summary)
    printed = capsys.readouterr().out
    assert "ignored: orders/notes.txt: not a feed file" in printed
    assert "ignored: payments/: not in a feed folder" in printed


def test_s3_keys_outside_the_feeds_are_reported_and_loaded_objects_not_fetched(
    landing_env, monkeypatch
):
    url, _ = landing_env("landing_s3")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="feeds")
        body = b"\n".join([ORDERS_HEADER, order(1)]) + b"\n"
        client.put_object(Bucket="feeds", Key="landing/orders/orders_2026-01-03.csv", Body=body)
        client.put_object(Bucket="feeds", Key="landing/orders/copy.csv", Body=body)
        client.put_object(Bucket="feeds", Key="landing/readme.txt", Body=b"not a feed")
        client.put_object(Bucket="feeds", Key="landing/orders/notes.md", Body=b"x")
        client.put_object(Bucket="feeds", Key="landing/orders/../x.csv", Body=body)
        client.put_object(Bucket="feeds", Key="elsewhere/orders/secret.csv", Body=body)
        bucket = S3Bucket(
            bucket_name="feeds",
            credentials=AwsCredentials(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                region_name="us-east-1",
            ),
        )

        run = extract_feeds_flow(source="s3", bucket=bucket)
        again = extract_feeds_flow(source="s3", bucket=bucket)

    assert [b.source_file for b in run.batches] == ["landing/orders/copy.csv"]
    assert [r.name for r in run.repeated] == ["landing/orders/orders_2026-01-03.csv"]
    assert reasons(run) == {
        "landing/readme.txt": "not_in_a_feed",
        "landing/orders/notes.md": "unknown_extension",
        "landing/orders/../x.csv": "unsafe_key",
    }
    assert scalar(url, "select count(*) from raw.orders") == 1
    # Nothing new: no object is downloaded again (ETags in the ledger).
    assert (again.batches, again.repeated, again.files_read) == ([], [], 0)


# ---------------------------------------------------------------- 15: re-sent is not drift


def test_a_file_re_sent_with_new_content_is_reported_as_re_sent_not_as_drift(landing_env, capsys):
    url, landing = landing_env("landing_resent")
    path = write(landing / "interactions" / "interactions_2026-01-01.jsonl", [interaction(1)])
    extract_feeds_flow()
    shapes = scalar(url, "select count(*) from ops.schema_versions")
    write(path, [interaction(1), interaction(2)])

    run = extract_feeds_flow()

    (batch,) = run.batches
    assert batch.resent and batch.drift is None
    assert (batch.file_version, batch.previous_version) == (2, 1)
    assert scalar(url, "select count(*) from ops.schema_versions") == shapes
    summary = RunSummary()
    report_extraction(summary, Extraction(run.batches, run))
    assert summary.drift == []
    assert summary.resent == [batch.describe_resend()]
    capsys.readouterr()
    print_notes(summary)
    printed = capsys.readouterr().out
    assert (
        "re-sent: interactions/interactions_2026-01-01.jsonl: re-sent with new content" in printed
    )
    assert "schema drift" not in printed


# ---------------------------------------------------------------- 3: discovery reads the ledger


def test_discovery_reads_only_what_the_ledger_has_not_seen(landing_env):
    url, landing = landing_env("landing_discovery")
    for day in range(1, 6):
        write(landing / "orders" / f"orders_2026-01-0{day}.csv", [ORDERS_HEADER, order(day)])
        write(landing / "interactions" / f"interactions_2026-01-0{day}.jsonl", [interaction(day)])
    assert len(extract_feeds_flow().batches) == 10

    # A file rewritten with the same size and modification time is not read again: proof that
    # an unchanged file is never opened (the ledger, not the bytes, says what is new).
    path = landing / "orders" / "orders_2026-01-01.csv"
    stamp = path.stat().st_mtime_ns
    path.write_bytes(path.read_bytes().replace(b",web,", b",fax,"))
    os.utime(path, ns=(stamp, stamp))
    run = extract_feeds_flow()
    assert (run.batches, run.repeated, run.files_read) == ([], [], 0)
    assert run.discovery.startswith("10 feed files listed, 0 new or changed, 10 unchanged")

    # One new file: one task, one file read.
    write(landing / "orders" / "orders_2026-01-06.csv", [ORDERS_HEADER, order(6)])
    run = extract_feeds_flow()
    assert run.files_read == 1 and [b.source_file for b in run.batches] == [
        "orders/orders_2026-01-06.csv"
    ]


def test_a_ledger_row_from_before_modification_times_were_kept_is_completed_once(landing_env):
    url, landing = landing_env("landing_upgrade")
    write(landing / "orders" / "orders_2026-01-03.csv", [ORDERS_HEADER, order(1)])
    extract_feeds_flow()
    with psycopg.connect(url) as conn:
        conn.execute("update ops.files set modified_ns = null")

    run = extract_feeds_flow()

    assert (run.batches, run.repeated, run.files_read) == ([], [], 1)
    assert scalar(url, "select count(*) from ops.files where modified_ns is not null") == 1
    assert extract_feeds_flow().files_read == 0
