"""Gold's data dictionary (docs/gold.md) is what the models say, and every gold model and column
says something: regenerated here from the models alone (no database), compared with the file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.dictionary import DOC_PATH, gold_models, missing_descriptions, render

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models():
    return gold_models(PROJECT)


def test_every_gold_model_and_column_has_a_description(models):
    assert len(models) >= 3
    assert all(m.columns for m in models), [m.name for m in models if not m.columns]
    assert missing_descriptions(models) == []


def test_docs_gold_md_is_current(models):
    expected = render(models)
    actual = (PROJECT / DOC_PATH).read_text()
    assert actual == expected, "docs/gold.md is out of date: run `bankdw docs gold` and commit it"
    for model in models:  # each model has its section, each column its row
        assert f"## {model.name}\n" in actual
        for column in model.columns:
            assert f"| {column.name} | " in actual


def test_docs_gold_fails_on_a_column_without_description(tmp_path, monkeypatch):
    """`bankdw docs gold` on a project where one column lost its comment: the file is written,
    and the command names the column and fails."""
    shutil.copy(PROJECT / "config.yaml", tmp_path / "config.yaml")
    for folder in ("models", "macros", "audits"):
        shutil.copytree(PROJECT / folder, tmp_path / folder)
    model = tmp_path / "models" / "gold" / "dim_account.sql"
    text = model.read_text()
    assert " /* 8-digit account number */" in text
    model.write_text(text.replace(" /* 8-digit account number */", ""))
    monkeypatch.setenv("PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("WAREHOUSE_DIR", str(tmp_path / "state"))
    from flows.settings import reset_settings

    reset_settings()
    try:
        result = CliRunner().invoke(app, ["docs", "gold"])
    finally:
        monkeypatch.undo()
        reset_settings()
    assert result.exit_code == 1, result.output
    assert "gold.dim_account.account_number" in result.output
    assert "| account_number | text |  |" in (tmp_path / DOC_PATH).read_text()
