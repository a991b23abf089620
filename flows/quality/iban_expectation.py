"""A Great Expectations expectation for IBANs, checked by schwifty (country format and MOD-97)."""

from __future__ import annotations

from great_expectations.execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation
from great_expectations.expectations.metrics import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from flows.quality.iban import is_valid_iban


class ColumnValuesValidIban(ColumnMapMetricProvider):
    condition_metric_name = "column_values.valid_iban"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column, **kwargs):  # type: ignore[no-untyped-def]
        return column.astype(str).map(is_valid_iban)


class ExpectColumnValuesToBeValidIban(ColumnMapExpectation):
    """Expect each value to be an IBAN that schwifty accepts (format, length, checksum)."""

    map_metric = "column_values.valid_iban"
    success_keys = ("mostly",)
