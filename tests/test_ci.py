"""CI: the GitHub workflow and `make ci` run the same steps; `scripts/ci-plan`, their SQLMesh
step, runs for real here against an embedded Postgres of its own (a temporary WAREHOUSE_DIR)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def make_targets() -> dict[str, list[str]]:
    """Each Makefile target and its recipe lines (and prerequisites, as `<deps> ...`)."""
    targets: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_./$()-]+):(?!=)\s*(.*)$", line)
        if match:
            current = match.group(1)
            targets[current] = [f"<deps> {match.group(2).split('##')[0].strip()}"]
        elif line.startswith("\t") and current:
            targets[current].append(line.strip())
    return targets


def workflow_commands() -> list[str]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return [
        line.strip()
        for job in workflow["jobs"].values()
        for step in job["steps"]
        for line in step.get("run", "").splitlines()
    ]


def test_the_workflow_runs_existing_make_targets_and_scripts():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert set(workflow["jobs"]) == {"test", "plan"}
    assert workflow["jobs"]["plan"]["needs"] == "test"
    targets = make_targets()
    commands = workflow_commands()
    made = [c.split()[1].replace(".venv/", "$(VENV)/") for c in commands if c.startswith("make ")]
    assert {"lint", "test", "install"} <= set(made)
    assert all(target in targets for target in made), made
    scripts = {m for c in commands for m in re.findall(r"scripts/[\w-]+", c)}
    assert scripts == {"scripts/ci-plan"}
    assert all(os.access(ROOT / s, os.X_OK) for s in scripts)
    # A pull request is planned into an environment of its own over prod from the base branch.
    assert any('ci-plan" prod' in c or "ci-plan prod" in c for c in commands)
    assert any('ci-plan "pr_${{ github.event.pull_request.number }}"' in c for c in commands)


def test_make_ci_runs_the_workflows_steps():
    targets = make_targets()
    ci = targets["ci"]
    assert ci[0].split()[1:] == ["lint", "test"] and "scripts/ci-plan" in ci[1:]
    assert "$(BIN)/ruff format --check ." in targets["lint"]
    assert "$(BIN)/pytest" in targets["test"]
    # .ci/run keeps calling the README's test command.
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()
    assert "make test" in (ROOT / "README.md").read_text()


def test_ci_plan_builds_prod_and_plans_an_environment(tmp_path):
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env |= {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "TMPDIR": str(tmp_path),  # the script's temporary WAREHOUSE_DIR goes here
        "CI_DAYS": "2",
        "CI_SCALE": "20",
        "BIN": str(ROOT / ".venv" / "bin"),
    }
    done = subprocess.run(
        [str(ROOT / "scripts" / "ci-plan")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "transform finished for environment ci" in output
    assert "ci and prod: no model differs" in output
    assert not list(tmp_path.glob("bankdw-ci.*"))  # the temporary warehouse was removed
