"""Gold's data dictionary (docs/gold.md), generated from the models themselves.

Each gold model's description is the block comment before its MODEL header, and each column's the
comment after it in the select list: SQLMesh reads both (`model.description`,
`model.column_descriptions`). Column types come from SQLMesh's own inference over the models'
declared upstream columns. Everything here loads the project without a database: a SQLMesh
Context connects only when it plans or runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlglot import exp

SCHEMA = "gold"
DOC_PATH = Path("docs") / "gold.md"
HEADER = """# Gold: the data dictionary

Generated from the models' own descriptions (models/gold/*.sql) by `bankdw docs gold`; do not
edit by hand: `make test` fails when this file is not what the models say
(tests/test_dictionary.py). Analysts read these tables as the `analyst` role (README, "The analyst
role"); personal data is masked by the rules in macros/masking.py.
"""


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class ModelDoc:
    name: str
    kind: str
    grain: tuple[str, ...]
    description: str
    columns: tuple[ColumnDoc, ...]


def _paragraphs(text: str | None) -> str:
    """A comment's text as Markdown: lines re-joined, blank lines kept as paragraph breaks."""
    if not text:
        return ""
    blocks = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in b.splitlines()) for b in blocks)


def _type(data_type: object) -> str:
    text = data_type.sql(dialect="postgres").lower()  # type: ignore[attr-defined]
    return "unknown" if text == "unknown" else text


def _grain(grains: list) -> tuple[str, ...]:  # type: ignore[type-arg]
    """A model's grain as column names (`grain (a, b)` is one tuple expression)."""
    parts = [p for g in grains for p in (g.expressions if isinstance(g, exp.Tuple) else [g])]
    return tuple(p.sql(dialect="postgres") for p in parts)


def gold_models(project_root: Path) -> list[ModelDoc]:
    """Every model of the gold schema, in name order, as SQLMesh loads the project."""
    from sqlmesh import Context

    context = Context(paths=str(project_root))
    docs = []
    for model in context.models.values():
        if model.schema_name != SCHEMA:
            continue
        descriptions = model.column_descriptions
        columns = tuple(
            ColumnDoc(name, _type(data_type), _paragraphs(descriptions.get(name)))
            for name, data_type in (model.columns_to_types or {}).items()
        )
        docs.append(
            ModelDoc(
                name=f"{SCHEMA}.{model.view_name}",
                kind=model.kind.name.value,
                grain=_grain(model.grains),
                description=_paragraphs(model.description),
                columns=columns,
            )
        )
    return sorted(docs, key=lambda d: d.name)


def missing_descriptions(models: list[ModelDoc]) -> list[str]:
    """The models and columns without a description (`gold.x` or `gold.x.column`)."""
    missing = []
    for model in models:
        if not model.description:
            missing.append(model.name)
        missing.extend(f"{model.name}.{c.name}" for c in model.columns if not c.description)
    return missing


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(models: list[ModelDoc]) -> str:
    """docs/gold.md's text: a contents list, then per model its description and columns."""
    lines = [HEADER]
    lines += [f"- [{m.name}](#{m.name.replace('.', '')})" for m in models]
    for model in models:
        lines += ["", f"## {model.name}", "", model.description or "(no description)", ""]
        facts = f"Kind: {model.kind}."
        if model.grain:
            facts += f" Grain: {', '.join(model.grain)}."
        lines += [facts, "", "| column | type | description |", "| --- | --- | --- |"]
        lines += [f"| {c.name} | {_cell(c.type)} | {_cell(c.description)} |" for c in model.columns]
    return "\n".join(lines) + "\n"


def write(project_root: Path) -> tuple[Path, list[str]]:
    """Write docs/gold.md under `project_root`; returns its path and what lacks a description."""
    models = gold_models(project_root)
    path = project_root / DOC_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(models))
    return path, missing_descriptions(models)
