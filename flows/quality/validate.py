"""Run a contract's GX suite over a frame of rows and say, per row, which rules it broke.

One file-backed GX context under the warehouse's local state (`gx/`) keeps the newest
validation results (GX_RESULTS_KEPT: they hold the failing rows, personal data included), so Data
Docs (HTML) can be rebuilt after a run. GX is imported here, not at package import: it costs
seconds.
"""

from __future__ import annotations

import shutil
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from flows.quality.results import RuleStat


@dataclass
class FrameVerdict:
    """Rules broken per row position (0-based within the frame) and counts per rule."""

    broken: dict[int, list[str]] = field(default_factory=dict)
    stats: dict[str, RuleStat] = field(default_factory=dict)


def merge_stats(total: dict[str, RuleStat], more: dict[str, RuleStat]) -> None:
    for rule, stat in more.items():
        total.setdefault(rule, RuleStat(rule, stat.column)).add(stat.evaluated, stat.failed)


def coerce_numbers(frame: pd.DataFrame, required: dict[str, str]) -> dict[str, list[int]]:
    """Make numeric columns numeric in place; a non-number breaks `<col>_not_a_number`."""
    broken: dict[str, list[int]] = {}
    for column, family in required.items():
        if family not in ("integer", "numeric") or column not in frame:
            continue
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = frame[column].notna() & numbers.isna()
        if bad.any():
            broken[f"{column}_not_a_number"] = [int(i) for i in frame.index[bad]]
        frame[column] = numbers
    return broken


class ContractValidator:
    """Validates frames against the contracts with GX's pandas engine (thread-safe)."""

    def __init__(self, gx_root: Path, results_kept: int | None = None) -> None:
        import great_expectations as gx

        # Our IBAN expectation must be registered before the context reads the stored suites:
        # the accounts suite names it, and GX logs an error with a traceback for every
        # expectation type it does not know when it loads a suite.
        import flows.quality.iban_expectation  # noqa: F401
        from flows.settings import get_settings

        gx_root.mkdir(parents=True, exist_ok=True)
        self._gx = gx
        self._lock = threading.Lock()
        self.results_kept = get_settings().gx_results_kept if results_kept is None else results_kept
        self.context = gx.get_context(mode="file", project_root_dir=str(gx_root))
        self.context.variables.progress_bars = {"globally": False, "metric_calculations": False}
        self._source = self.context.data_sources.add_or_update_pandas("ingestion")
        self._definitions: dict[str, object] = {}

    def _definition(self, entity: str):  # type: ignore[no-untyped-def]
        from flows.quality.contracts import build_suite, contract_for

        if entity not in self._definitions:
            contract = contract_for(entity)
            try:
                asset = self._source.get_asset(entity)
            except LookupError:
                asset = self._source.add_dataframe_asset(entity)
            try:
                batch = asset.get_batch_definition("whole frame")
            except KeyError:
                batch = asset.add_batch_definition_whole_dataframe("whole frame")
            suite = self.context.suites.add_or_update(build_suite(contract))
            self._definitions[entity] = self.context.validation_definitions.add_or_update(
                self._gx.ValidationDefinition(name=f"raw.{entity}", data=batch, suite=suite)
            )
        return self._definitions[entity]

    def _run(self, entity: str, frame: pd.DataFrame):  # type: ignore[no-untyped-def]
        from great_expectations.exceptions.resource_freshness import (
            ResourceFreshnessAggregateError,
        )

        params = {
            "batch_parameters": {"dataframe": frame},
            "result_format": {"result_format": "COMPLETE"},
        }
        try:
            result = self._definition(entity).run(**params)
        except ResourceFreshnessAggregateError:
            # Another process saved the same suite to the shared store since we cached it.
            self._definitions.pop(entity, None)
            result = self._definition(entity).run(**params)
        self.prune_results()
        return result

    def _uncommitted(self) -> Path:
        return Path(self.context.root_directory) / "uncommitted"

    def stored_results(self) -> list[Path]:
        """The stored validation results, oldest first (their folder is the run's UTC time)."""
        store = self._uncommitted() / "validations"
        return sorted(store.rglob("*.json"), key=lambda p: (p.parent.name, p.stat().st_mtime))

    def prune_results(self) -> int:
        """Delete all but the newest `results_kept` validation results, and their Data Docs
        pages: each holds the rows that failed, whole. Returns how many were deleted."""
        results = self.stored_results()
        doomed = results[: max(len(results) - self.results_kept, 0)]
        store = self._uncommitted() / "validations"
        site = self._uncommitted() / "data_docs" / "local_site" / "validations"
        for path in doomed:
            page = (site / path.relative_to(store)).with_suffix(".html")
            path.unlink(missing_ok=True)
            page.unlink(missing_ok=True)
            _remove_empty_folders(path.parent, stop=store)
            _remove_empty_folders(page.parent, stop=site)
        return len(doomed)

    def validate(
        self, entity: str, frame: pd.DataFrame, now: datetime | None = None
    ) -> FrameVerdict:
        """Evaluate every rule of the entity's contract on `frame` (positions, not labels).

        `now` is the moment of judging, for rules about the clock (default: this machine's).
        """
        from flows.quality.contracts import contract_for

        contract = contract_for(entity)
        now = now or datetime.now(UTC)
        frame = frame.reset_index(drop=True)
        type_broken = coerce_numbers(frame, contract.required)
        for name, derive in contract.derived.items():
            frame[name] = derive(frame, now)
        with self._lock:  # GX contexts are not thread-safe; extraction tasks run in threads
            result = self._run(entity, frame)
        verdict = FrameVerdict()
        broken: dict[int, list[str]] = defaultdict(list)
        for rule, positions in type_broken.items():
            for position in positions:
                broken[position].append(rule)
            verdict.stats[rule] = RuleStat(
                rule, rule.removesuffix("_not_a_number"), len(frame), len(positions)
            )
        for outcome in result.results:
            config = outcome.expectation_config
            rule = config.meta["rule"]
            column = (
                config.kwargs.get("column")
                or config.kwargs.get("column_A")
                or ", ".join(config.kwargs.get("column_list") or [])
            )
            failed_rows = outcome.result.get("unexpected_index_list") or []
            if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"contract raw.{entity}, rule {rule}: GX could not evaluate it: "
                    f"{outcome.exception_info.get('exception_message')}"
                )
            for position in failed_rows:
                broken[int(position)].append(rule)
            verdict.stats[rule] = RuleStat(rule, column, len(frame), len(failed_rows))
        verdict.broken = dict(broken)
        return verdict

    def build_docs(self) -> str | None:
        """Rebuild the HTML Data Docs and return the path of their index page.

        Every contract's suite is saved first, so the docs show the rules of database tables
        too (those batches are judged in SQL, so their results live in ops.dq_results).
        """
        from flows.quality.contracts import CONTRACTS, build_suite

        with self._lock:
            for contract in CONTRACTS.values():
                self.context.suites.add_or_update(build_suite(contract))
            self.prune_results()
            # Rebuilt from the results kept: no page outlives its result.
            shutil.rmtree(self._uncommitted() / "data_docs" / "local_site" / "validations", True)
            self.context.build_data_docs()
            sites = self.context.get_docs_sites_urls()
        return sites[0]["site_url"].removeprefix("file://") if sites else None


def _remove_empty_folders(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents up to (not including) `stop` while they are empty."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


_validators: dict[Path, ContractValidator] = {}
_validators_lock = threading.Lock()


def get_validator(gx_root: Path) -> ContractValidator:
    with _validators_lock:
        if gx_root not in _validators:
            _validators[gx_root] = ContractValidator(gx_root)
        return _validators[gx_root]
