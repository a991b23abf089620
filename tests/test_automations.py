"""The automations for server mode (automations/*.yaml) are what `prefect automation create
--from-file` accepts, and name what exists: prefect.yaml's deployments, and a notification block
id placeholder the install steps replace. No server needed: the CLI validates each automation
with AutomationCore before sending it, and so does this test."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import jinja2
import pytest
import yaml
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

REPO = Path(__file__).resolve().parents[1]
FILES = sorted((REPO / "automations").glob("*.yaml"))
PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def automations_in(path: Path) -> list[AutomationCore]:
    """Read as prefect/cli/automation.py's `create` reads a file: a mapping with `automations`,
    a list, or one automation."""
    data = yaml.safe_load(path.read_text())
    items = data["automations"] if isinstance(data, dict) and "automations" in data else data
    return [
        AutomationCore.model_validate(item)
        for item in (items if isinstance(items, list) else [items])
    ]


def deployment_names() -> set[str]:
    return {d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}


def test_there_are_automation_files():
    assert FILES, "automations/*.yaml"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_automation_parses_and_names_what_exists(path):
    automations = automations_in(path)
    assert automations
    declared = deployment_names()
    for automation in automations:
        trigger = automation.trigger
        assert isinstance(trigger, EventTrigger), automation.name
        related = trigger.match_related
        specs = related if isinstance(related, list) else [related]
        names = set()
        for spec in specs:
            # ResourceSpecification keeps every value as a list of accepted values.
            assert spec.get("prefect.resource.role") == ["deployment"], automation.name
            names |= set(spec.get("prefect.resource.name"))
        # Every bankdw deployment is watched, and nothing that is not one.
        assert names == declared, automation.name
        assert automation.actions, automation.name
        for action in automation.actions:
            assert isinstance(action, SendNotification), automation.name
            # The install steps (the file's header, README) replace this one placeholder.
            assert str(action.block_document_id) == PLACEHOLDER
            for template in (action.subject, action.body):
                jinja2.Environment().parse(template)  # a typo in a template fails here
    assert f"s/{PLACEHOLDER}/" in path.read_text(), "the install steps replace the placeholder"


def test_failed_and_crashed_runs_notify():
    triggers = [a.trigger for path in FILES for a in automations_in(path)]
    reactive = [t for t in triggers if t.posture == Posture.Reactive]
    assert any(
        {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"} <= t.expect for t in reactive
    )


def test_a_run_that_does_not_start_notifies():
    """Proactive: after Late, no Running (or another decided end) within the window."""
    triggers = [a.trigger for path in FILES for a in automations_in(path)]
    proactive = [t for t in triggers if t.posture == Posture.Proactive]
    assert proactive
    for trigger in proactive:
        assert trigger.after == {"prefect.flow-run.Late"}
        assert "prefect.flow-run.Running" in trigger.expect
        assert trigger.within >= timedelta(minutes=5)
        assert trigger.for_each == {"prefect.resource.id"}  # one window per flow run
