"""SQLMesh virtual environments: which names are allowed, and how one differs from another.

`staging` holds a change until it is promoted to prod (Transformation.promote); a pull request
gets `pr_<number>`. An environment holds every model (config.yaml: `include_unmodified`), the
unchanged ones as views on prod's own tables, so only changed models cost a table and a build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flows.transform import model_name

if TYPE_CHECKING:
    from flows.transform import Transformation

PROD = "prod"
STAGING = "staging"
# SQLMesh puts an environment's views in `<schema>__<environment>`: a name that needs no quoting.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


def check_name(environment: str) -> str:
    """The environment's name if it is one SQLMesh keeps as given, else ValueError."""
    if not NAME.match(environment):
        raise ValueError(
            f"environment {environment!r}: use lower-case letters, digits and underscores, "
            "starting with a letter (e.g. staging, pr_42)"
        )
    return environment


@dataclass
class ModelDiff:
    """How one model differs between two environments: its columns, then its rows, joined on the
    model's grain."""

    model: str
    added_columns: list[tuple[str, str]] = field(default_factory=list)  # (column, type)
    removed_columns: list[tuple[str, str]] = field(default_factory=list)
    retyped_columns: list[tuple[str, str, str]] = field(default_factory=list)  # (column, was, is)
    rows_before: int = 0  # in the environment compared against (prod)
    rows_after: int = 0  # in the environment being checked (staging)
    only_before: int = 0  # grains only prod has
    only_after: int = 0  # grains only staging has
    identical: int = 0  # joined rows equal in every shared column
    changed: int = 0  # joined rows that differ in some shared column
    changed_columns: dict[str, float] = field(default_factory=dict)  # column -> % of rows equal

    def describe(self) -> list[str]:
        lines = []
        for column, type_ in self.added_columns:
            lines.append(f"+ column {column} ({type_})")
        for column, type_ in self.removed_columns:
            lines.append(f"- column {column} ({type_})")
        for column, was, now in self.retyped_columns:
            lines.append(f"~ column {column}: {was} -> {now}")
        lines.append(
            f"rows: {self.rows_before:,} -> {self.rows_after:,}; {self.only_before:,} only "
            f"before, {self.only_after:,} only after, {self.identical:,} identical, "
            f"{self.changed:,} changed"
        )
        for column, equal in self.changed_columns.items():
            lines.append(f"  {column}: {equal:.1f}% of joined rows equal")
        return lines


def changed_models(transformation: Transformation, environment: str, against: str) -> list[str]:
    """Models whose version differs between the two environments (SQLMesh names)."""
    state = transformation.context.state_reader
    envs = {}
    for name in (environment, against):
        env = state.get_environment(name)
        if env is None:
            raise ValueError(
                f"there is no environment {name!r}: plan it first (bankdw plan {name})"
            )
        envs[name] = {s.name: s for s in env.snapshots}
    before, after = envs[against], envs[environment]
    return sorted(
        name
        for name in before.keys() | after.keys()
        if (before.get(name) and before[name].fingerprint)
        != (after.get(name) and after[name].fingerprint)
    )


def diff_environments(
    transformation: Transformation, environment: str, against: str = PROD
) -> list[ModelDiff]:
    """Per changed model: the schema and row differences of `environment` against `against`
    (SQLMesh's table_diff, joined on each model's grain). A model only one side has is listed
    with the columns it adds or drops."""
    context = transformation.context
    diffs = []
    for name in changed_models(transformation, environment, against):
        model = context.get_model(name)
        if model is None:  # removed from the project: nothing to join
            diffs.append(ModelDiff(model_name(name)))
            continue
        table_diffs = context.table_diff(
            source=against,
            target=environment,
            select_models=[model.name],
            show=False,
            show_sample=False,
            warn_grain_check=True,
        )
        for table_diff in table_diffs:
            diffs.append(_model_diff(model_name(name), table_diff))
    return diffs


def _model_diff(model: str, table_diff) -> ModelDiff:  # type: ignore[no-untyped-def]
    schema = table_diff.schema_diff()
    rows = table_diff.row_diff(skip_grain_check=True)
    stats = rows.column_stats
    # No share when no row joins (an empty table on both sides: no alert yet, say).
    changed_columns = {
        str(column): float(pct)
        for column, pct in stats["pct_match"].items()
        if str(column) and pct is not None and float(pct) < 100
    }
    return ModelDiff(
        model=model,
        added_columns=[(c, t.sql(dialect="postgres")) for c, t in schema.added],
        removed_columns=[(c, t.sql(dialect="postgres")) for c, t in schema.removed],
        retyped_columns=[
            (c, a.sql(dialect="postgres"), b.sql(dialect="postgres"))
            for c, (a, b) in schema.modified.items()
        ],
        rows_before=rows.source_count,
        rows_after=rows.target_count,
        only_before=rows.s_only_count,
        only_after=rows.t_only_count,
        identical=rows.full_match_count,
        changed=rows.partial_match_count,
        changed_columns=changed_columns,
    )
