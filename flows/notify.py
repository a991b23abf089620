"""Where alerts go: Prefect notification blocks built from the settings, and what they say.

Three channels, each configured by one secret setting (a webhook URL is its own credential):

- ALERT_SLACK_WEBHOOK_URL: Slack (`SlackWebhook`, through Apprise) for hooks.slack.com, and
  any Slack-compatible webhook (Mattermost, Rocket.Chat, Teams workflows...) otherwise, as
  Slack's `{"text": ...}` (`CustomWebhookNotificationBlock`);
- ALERT_WEBHOOK_URL: a generic webhook receiving the alert as JSON fields
  (`CustomWebhookNotificationBlock`), for an incident tool or a pager;
- ALERT_EMAIL_URL: e-mail, an Apprise `mailto://` / `mailtos://` URL (a notification block on
  Apprise, like Prefect's own).

The blocks are built in memory for each alert, never saved to a Prefect server: their secrets
stay in the settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect.blocks.notifications import AbstractAppriseNotificationBlock
from pydantic import SecretStr

from flows.settings import Settings

SLACK_HOST = re.compile(r"^https://hooks\.slack(-gov)?\.com/", re.I)
# Apprise's notify types, by severity: Slack and e-mail colour and label them.
NOTIFY_TYPE = {"critical": "failure", "warning": "warning"}


@dataclass(frozen=True)
class Notification:
    """One alert, as the channels present it."""

    alert_id: int
    severity: str  # critical | warning
    kind: str  # step_failed, batch_refused, audit_failed, dq_threshold, freshness, ...
    entity: str
    message: str
    next_step: str | None
    raised_at: str
    warehouse: str  # host, port, database: never a password
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    task: str | None = None
    attempts: int | None = None
    error: str | None = None
    batch_id: int | None = None

    @property
    def subject(self) -> str:
        return f"[{self.severity}] bankdw {self.kind.replace('_', ' ')}: {self.entity}"

    @property
    def body(self) -> str:
        lines = [self.message]
        if self.next_step:
            lines.append(f"Next: {self.next_step}")
        if self.flow_run_id:
            lines.append(f"Flow run: {self.flow_run_name or '?'} ({self.flow_run_id})")
        if self.task:
            attempts = f", {self.attempts} attempt{'s' if self.attempts != 1 else ''}"
            lines.append(f"Task: {self.task}{attempts if self.attempts else ''}")
        lines.append(f"Warehouse: {self.warehouse}; alert #{self.alert_id} at {self.raised_at}")
        return "\n".join(lines)

    def fields(self) -> dict[str, Any]:
        """The generic webhook's JSON object."""
        return {
            "alert_id": self.alert_id,
            "severity": self.severity,
            "kind": self.kind,
            "entity": self.entity,
            "summary": self.subject,
            "message": self.message,
            "next_step": self.next_step,
            "flow_run_id": self.flow_run_id,
            "flow_run_name": self.flow_run_name,
            "task": self.task,
            "attempts": self.attempts,
            "error": self.error,
            "batch_id": self.batch_id,
            "raised_at": self.raised_at,
            "warehouse": self.warehouse,
        }


class EmailNotification(AbstractAppriseNotificationBlock):
    """A notification block for Apprise's mailto:// URLs (Prefect ships none for plain SMTP)."""

    _block_type_name = "bankdw E-mail"
    _block_type_slug = "bankdw-email"

    url: SecretStr


def _send_slack(url: SecretStr, note: Notification) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    if SLACK_HOST.match(url.get_secret_value()):
        block = SlackWebhook(url=url, notify_type=NOTIFY_TYPE[note.severity])
        with block.raise_on_failure():  # Apprise's blocks only log a failure otherwise
            block.notify(note.body, note.subject)
        return
    # One placeholder, filled with the whole text: the block substitutes values without reading
    # placeholders inside them, so a message holding `{{...}}` is sent as it is.
    CustomWebhookNotificationBlock(
        name="bankdw",
        url=url.get_secret_value(),
        json_data={"text": "{{text}}"},
        secrets={"text": f"*{note.subject}*\n{note.body}"},
    ).notify(note.body, note.subject)


def _send_webhook(url: SecretStr, note: Notification) -> None:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    # Each field a placeholder of its own, replaced by its value with its JSON type.
    fields = note.fields()
    CustomWebhookNotificationBlock(
        name="bankdw",
        url=url.get_secret_value(),
        json_data={key: "{{" + key + "}}" for key in fields},
        secrets=fields,
    ).notify(note.body, note.subject)


def _send_email(url: SecretStr, note: Notification) -> None:
    block = EmailNotification(url=url, notify_type=NOTIFY_TYPE[note.severity])
    with block.raise_on_failure():
        block.notify(note.body, note.subject)


def channels(settings: Settings) -> dict[str, Callable[[Notification], None]]:
    """The configured channels by name, each a function that sends one notification."""
    configured: dict[str, Callable[[Notification], None]] = {}
    for name, url, send in (
        ("slack", settings.alert_slack_webhook_url, _send_slack),
        ("webhook", settings.alert_webhook_url, _send_webhook),
        ("email", settings.alert_email_url, _send_email),
    ):
        if url is not None and url.get_secret_value():
            configured[name] = lambda note, url=url, send=send: send(url, note)
    return configured


def redact(error: BaseException, settings: Settings) -> str:
    """What a failed send says, without the secrets it may quote (an HTTP error names its URL)."""
    text = f"{type(error).__name__}: {error}"
    for url in (
        settings.alert_slack_webhook_url,
        settings.alert_webhook_url,
        settings.alert_email_url,
    ):
        if url is not None and url.get_secret_value():
            text = text.replace(url.get_secret_value(), "<secret URL>")
    return text[:500]
