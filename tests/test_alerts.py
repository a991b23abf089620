"""Alerting through Prefect's notification blocks, received by real servers on 127.0.0.1: a step
that still fails after its retries (one notification, attempts = retries + 1), a refused batch, a
failed audit, a data-quality threshold breach and a silent source each reach the generic webhook,
the Slack-compatible webhook and e-mail, and stay recorded in ops.alerts."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from flows.pipeline import extract_all_flow, extract_flow, run_flow
from flows.retries import RETRIES
from flows.settings import get_settings, reset_settings
from flows.simulate import simulate


class Receiver:
    """An HTTP server on 127.0.0.1 keeping every JSON body POSTed to it, by path."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def payloads(self, path: str = "/hook") -> list[dict]:
        return [body for p, body in self.received if p == path]


class MailReceiver:
    """An SMTP server on 127.0.0.1 keeping every message it is sent."""

    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import asyncore
            import smtpd
        self.messages: list = []
        messages = self.messages

        class Server(smtpd.SMTPServer):
            def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
                messages.append(message_from_bytes(data))

        self.server = Server(("127.0.0.1", 0), None, decode_data=False)
        self.port = self.server.socket.getsockname()[1]
        self._asyncore = asyncore
        threading.Thread(target=asyncore.loop, kwargs={"timeout": 0.1}, daemon=True).start()

    def close(self) -> None:
        self.server.close()


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, MailReceiver]]:
    http, mail = Receiver(), MailReceiver()
    yield http, mail
    http.server.shutdown()
    mail.close()


@pytest.fixture
def alerting(bank_factory, receivers, monkeypatch):
    """A fresh bank whose alerts go to the three channels, all on 127.0.0.1."""
    http, mail = receivers
    http.received.clear()
    mail.messages.clear()

    def create(name: str, **settings: str):  # type: ignore[no-untyped-def]
        monkeypatch.setenv("ALERT_WEBHOOK_URL", f"{http.url}/hook")
        monkeypatch.setenv("ALERT_SLACK_WEBHOOK_URL", f"{http.url}/slack")
        monkeypatch.setenv(
            "ALERT_EMAIL_URL",
            f"mailto://127.0.0.1:{mail.port}?mode=insecure"
            "&from=bankdw@bank.example&to=data-oncall@bank.example",
        )
        for key, value in settings.items():
            monkeypatch.setenv(key, value)
        bank = bank_factory(name)
        return bank

    yield create
    monkeypatch.undo()
    reset_settings()


def alerts(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select severity, kind, entity, attempts, notified_at is not null, channels "
            "from ops.alerts order by alert_id"
        ).fetchall()


def wait_for(condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not received in time")
        time.sleep(0.1)


def test_a_step_failing_after_its_retries_sends_one_notification(alerting, receivers, monkeypatch):
    http, mail = receivers
    bank = alerting("alert_down")
    # The source stops answering: every table's extraction fails on each of its attempts.
    monkeypatch.setenv("SOURCE_URL", "postgresql://bankdw@127.0.0.1:9/corebank")
    reset_settings()
    state = extract_flow(return_state=True)
    assert state.is_failed()
    flow_run_id = str(state.state_details.flow_run_id)
    with pytest.raises(Exception, match="cannot connect to the source"):
        state.result()

    tables = get_settings().source_tables
    wait_for(lambda: len(http.payloads()) >= len(tables))
    time.sleep(1)  # a sixth would come now, if a retry sent one
    payloads = http.payloads()
    steps = sorted(p["entity"] for p in payloads)
    # One notification per failing step, not one per attempt.
    assert steps == sorted(f"extract {t}" for t in tables), payloads
    for payload in payloads:
        assert payload["severity"] == "critical" and payload["kind"] == "step_failed"
        assert payload["attempts"] == RETRIES + 1
        assert payload["flow_run_id"] == flow_run_id
        assert payload["task"] == payload["entity"]
        assert "cannot connect to the source" in payload["error"]
        assert "127.0.0.1" in payload["error"] and "password" not in payload["error"]
        assert payload["next_step"]
    # The Slack-compatible webhook got the same ones as text; e-mail too.
    slack = http.payloads("/slack")
    assert len(slack) == len(tables) and all("step failed" in s["text"] for s in slack)
    wait_for(lambda: len(mail.messages) == len(tables))
    assert all("[critical] bankdw step failed" in m["Subject"] for m in mail.messages)
    recorded = alerts(bank.warehouse_url)
    assert len(recorded) == len(tables)
    assert all(
        r[:2] == ("critical", "step_failed") and r[3] == RETRIES + 1 and r[4] for r in recorded
    )
    assert all(sorted(r[5]) == ["email", "slack", "webhook"] for r in recorded)


def test_a_refused_batch_is_one_critical_notification(alerting, receivers):
    http, _ = receivers
    bank = alerting("alert_refused")
    simulate(bank.source_url, 5, scale=100, seed=9, bad_rate=0.0)
    extract_flow()
    with psycopg.connect(bank.source_url) as conn:
        conn.execute(
            "update transactions set currency = 'XYZ', "
            "updated_at = updated_at + interval '40 days' where transaction_id % 5 = 0"
        )
    with pytest.raises(Exception, match="above the 5.0% threshold"):
        extract_flow()
    (payload,) = http.payloads()  # the refusal, not also a failed step
    assert payload["kind"] == "batch_refused" and payload["severity"] == "critical"
    assert payload["entity"] == "transactions" and payload["batch_id"]
    assert "quarantine list --entity transactions" in payload["next_step"]
    assert alerts(bank.warehouse_url) == [
        ("critical", "batch_refused", "transactions", None, True, ["slack", "webhook", "email"])
    ]


def test_a_failed_audit_is_a_critical_notification(alerting, receivers):
    http, _ = receivers
    bank = alerting("alert_audit")
    simulate(bank.source_url, 2, scale=20, seed=3, bad_rate=0.0)
    with psycopg.connect(bank.source_url) as conn:
        # A booked transaction on an account the bank does not have: the link audit catches it.
        conn.execute(
            """
            insert into transactions (transaction_id, account_id, reference, transaction_type,
                direction, amount, currency, status, transaction_date, booking_date,
                created_at, updated_at)
            values (999999999, 424242, 'ORPHAN-1', 'deposit', 'credit', 10.00, 'GBP', 'booked',
                    '2026-01-02', '2026-01-02', '2026-01-02 12:00+00', '2026-01-02 12:00+00')
            """
        )
    with pytest.raises(Exception, match="link_hub_keys_exist"):
        run_flow()
    audit = [p for p in http.payloads() if p["kind"] == "audit_failed"]
    assert len(audit) == 1, http.payloads()
    (payload,) = audit
    assert payload["severity"] == "critical" and payload["entity"] == "sqlmesh run prod"
    assert "vault.link_account_transaction" in payload["message"]
    assert payload["attempts"] == 1  # bad data is not retried
    assert not [p for p in http.payloads() if p["kind"] == "step_failed"]


def test_a_dq_breach_is_a_warning(alerting, receivers):
    http, _ = receivers
    bank = alerting("alert_dq", DQ_SCORE_MIN="100")
    simulate(bank.source_url, 3, scale=60, seed=9, bad_rate=0.02)
    extract_all_flow()
    dq = [p for p in http.payloads() if p["kind"] == "dq_threshold"]
    with psycopg.connect(bank.warehouse_url) as conn:
        quarantined = {
            r[0]
            for r in conn.execute(
                "select entity from ops.batches where rows_quarantined > 0 and status = 'committed'"
            )
        }
    assert quarantined and {p["entity"] for p in dq} == quarantined
    assert all(p["severity"] == "warning" for p in dq)
    assert all("below DQ_SCORE_MIN 100" in p["message"] for p in dq)


def test_a_silent_source_is_a_warning_once(alerting, receivers):
    http, _ = receivers
    bank = alerting("alert_fresh", FRESHNESS_LIMIT_HOURS='{"corebank": 24, "orders": 36}')
    simulate(bank.source_url, 2, scale=20, seed=9, bad_rate=0.0)
    extract_all_flow()
    assert not [p for p in http.payloads() if p["kind"] == "freshness"]

    # Two days without a delivery from the core bank (its batches are older), then a run that
    # finds nothing new: the core bank is late; the feed that never delivered is not judged.
    with psycopg.connect(bank.warehouse_url) as conn:
        conn.execute("update ops.batches set finished_at = finished_at - interval '2 days'")
    extract_all_flow()
    (late,) = [p for p in http.payloads() if p["kind"] == "freshness"]
    assert late["entity"] == "corebank" and late["severity"] == "warning"
    assert "longer than its limit of 24 h" in late["message"]
    assert "FRESHNESS_LIMIT_HOURS" in late["next_step"]
    # Still silent at the next run: recorded again, not sent again within ALERT_REPEAT_MINUTES.
    http.received.clear()
    extract_all_flow()
    assert not [p for p in http.payloads() if p["kind"] == "freshness"]
    with psycopg.connect(bank.warehouse_url) as conn:
        assert conn.execute(
            "select count(*) from ops.alerts where kind = 'freshness'"
        ).fetchone() == (2,)
