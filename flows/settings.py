"""The one settings object: environment variables (prefix-free, as users expect) and the `.env`
file in the repository root."""

from __future__ import annotations

import os
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.pgurl import folder_name, parse_url


def find_project_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder above `start` holding config.yaml and flows/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "config.yaml").is_file() and (folder / "flows").is_dir():
            return folder
    # Installed elsewhere (site-packages): fall back to the package's own checkout.
    return Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    # No env_file here: get_settings() names the root's `.env`, wherever the command runs from.
    model_config = SettingsConfigDict(extra="ignore", env_file_encoding="utf-8")

    # Connections. An unset WAREHOUSE_URL means the embedded PostgreSQL under .warehouse/, with
    # the simulated core bank beside it; a server warehouse needs SOURCE_URL.
    warehouse_url: SecretStr | None = None
    source_url: SecretStr | None = None
    project_root: Path = Field(default_factory=find_project_root)
    # Local state (see data_dir): default .warehouse/ for the embedded warehouse, a folder per
    # server under .warehouse/servers/ otherwise.
    warehouse_dir: Path | None = None
    warehouse_database: str = "warehouse"
    source_database: str = "corebank"

    # The simulated bank.
    sim_seed: int = 42
    sim_scale: int = 1000
    sim_bad_rate: float = 0.005
    # AML cases of each rule planted per 30 simulated days per 1,000 customers (0: none);
    # flows/simulate/aml.py states the rules.
    sim_aml_cases: float = 5.0
    sim_start_date: date = date(2026, 1, 1)
    sim_initial_days: int = 30

    # Extraction.
    source_tables: tuple[str, ...] = (
        "products",
        "customers",
        "accounts",
        "account_holders",
        "account_balances",
        "transactions",
    )
    record_source: str = "corebank"
    # A source row stamped later than now plus this is implausible: quarantined, never trusted
    # as a watermark. Rows stamped in the future within it wait until the clock reaches them.
    future_tolerance_seconds: int = 900
    # Deletes (extract/deletes.py): keys loaded in the last DELETE_WATCH_DAYS are checked every run;
    # every key is checked when the last full sweep is older than DELETE_SWEEP_HOURS.
    delete_watch_days: float = 7.0
    delete_sweep_hours: float = 24.0
    # No date or timestamp of a bank's records lies before this (midnight UTC): an earlier one is
    # a broken value (0001-01-01, a year typed as 20), quarantined as `<column>_too_early`.
    earliest_plausible_date: date = date(1900, 1, 1)

    # CRM / operations feed files: a landing folder, or an S3 bucket (MinIO given an endpoint).
    # Default: <data_dir>/landing for the embedded demo; none for a server warehouse (feeds off).
    landing_dir: Path | None = None
    # Landing protocol: files arrive under a temporary name and are renamed when complete. For a
    # sender that cannot rename, a file also waits until it was left unmodified this long.
    landing_quiet_seconds: float = 0.0
    s3_bucket: str | None = None
    s3_prefix: str = "landing/"
    s3_endpoint_url: str | None = None
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = "eu-west-2"
    feed_record_source: str = "crm"

    # Data contracts.
    reject_threshold: float = 0.05  # a batch with a larger rejected share fails whole...
    reject_min_rows: int = 100  # ...when it has at least this many rows (one bad row of 3 is noise)
    contract_frame_rows: int = 50_000  # rows judged per GX validation (bounds memory)
    # GX validation results (and their Data Docs pages) hold the rows that failed, personal data
    # included: only the newest this many are kept (0: none; ops.dq_results keeps the counts).
    gx_results_kept: int = Field(default=50, ge=0)

    # Transformation.
    sqlmesh_gateway: str = "warehouse"
    # Every path that runs SQLMesh takes one lock in the warehouse; a second one waits this long
    # for it (saying who holds it), then gives up.
    sqlmesh_lock_timeout_seconds: float = 600.0
    # The zone that decides which calendar day a timestamp falls on (booking dates, days in gold).
    bank_timezone: str = "UTC"
    # gold.account_activity: an account is dormant after this many months without a
    # customer-initiated transaction (channel other than 'system').
    dormant_after_months: int = 12

    # AML alerting (models/gold/aml_alerts.sql, README "AML alerts"): each rule's thresholds,
    # exported to SQLMesh as model variables (flows/transform.py model_variables). Rules look at
    # booked transactions in AML_CURRENCY only, windows measured on booked_at.
    aml_currency: str = "GBP"
    # structuring: this many cash deposits or more, each within the amount range, within the days.
    aml_structuring_min_deposits: int = Field(default=3, ge=2)
    aml_structuring_min_amount: Decimal = Decimal("9000")
    aml_structuring_max_amount: Decimal = Decimal("9999.99")
    aml_structuring_window_days: float = Field(default=7.0, gt=0)
    # velocity: more than this many debits within the minutes (variant count), or more than this
    # amount of debits within the hours (variant amount).
    aml_velocity_max_debits: int = Field(default=10, ge=1)
    aml_velocity_count_window_minutes: float = Field(default=60.0, gt=0)
    aml_velocity_max_amount: Decimal = Decimal("50000")
    aml_velocity_amount_window_hours: float = Field(default=24.0, gt=0)
    # pass_through: a credit of at least this much, then debits of at least the share of it within
    # the hours.
    aml_pass_through_min_credit: Decimal = Decimal("5000")
    aml_pass_through_share: Decimal = Field(default=Decimal("0.9"), gt=0, le=1)
    aml_pass_through_window_hours: float = Field(default=48.0, gt=0)
    # new_account_high_value: a single credit of at least this much within the days of opening.
    aml_new_account_min_credit: Decimal = Decimal("10000")
    aml_new_account_days: int = Field(default=30, ge=0)
    # network (fan_in / fan_out) over internal transfers: this many distinct accounts or more
    # within the hours; "most of it" is the share. fan_in: transfers in from them, then debits of
    # at least the share of what came in within the hours after the last; fan_out: a credit of at
    # least the minimum, then transfers out to them within the hours totalling the share of it.
    aml_fan_min_accounts: int = Field(default=5, ge=2)
    aml_fan_window_hours: float = Field(default=72.0, gt=0)
    aml_fan_share: Decimal = Field(default=Decimal("0.8"), gt=0, le=1)
    aml_fan_out_min_credit: Decimal = Decimal("5000")

    # Retries for tasks that touch the network or a database.
    task_retries: int = 3
    task_retry_delay_seconds: float = 2.0

    # Alerting (flows/alerts.py): where notifications go, through Prefect's notification blocks.
    # Each is a secret (a webhook URL is its own credential). Unset: alerts stay in ops.alerts.
    alert_slack_webhook_url: SecretStr | None = None  # Slack, or any Slack-compatible webhook
    alert_webhook_url: SecretStr | None = None  # a generic webhook: the alert as JSON fields
    alert_email_url: SecretStr | None = None  # an Apprise mailto:// or mailtos:// URL
    # The same alert (kind and subject) again within this long is recorded, not sent again.
    alert_repeat_minutes: float = Field(default=60.0, ge=0)
    # Per entity and run, the share of rows read (in %) that passed the contract, under which a
    # warning is raised (a batch over REJECT_THRESHOLD is refused whole, a critical alert).
    dq_score_min: float = Field(default=98.0, ge=0, le=100)
    # Per source, the hours it may deliver nothing before a warning: a record source (the core
    # bank: any of its tables) or a feed. A source not listed is not watched. As JSON in the
    # environment: FRESHNESS_LIMIT_HOURS='{"corebank": 24, "orders": 36}'.
    freshness_limit_hours: dict[str, float] = Field(
        default_factory=lambda: {
            "corebank": 24.0,
            "interactions": 36.0,
            "opportunities": 36.0,
            "orders": 36.0,
        }
    )

    # Status and observability (flows/runs.py, flows/logs.py). LOG_FORMAT=json writes every log
    # record as one JSON object per line, with the flow run id as its correlation id.
    log_format: Literal["text", "json"] = "text"
    # Runs `bankdw status` lists by default.
    status_runs_shown: int = Field(default=10, ge=1)

    # Retention (flows/retention.py, `bankdw cleanup`, the weekly maintenance flow): resolved
    # quarantine rows and ops logs older than this many days are removed; raw is kept whole.
    retention_days: int = Field(default=90, ge=1)
    # Rows per delete statement: each commits on its own, so cleanup never holds long locks.
    retention_batch_rows: int = Field(default=5000, ge=1)

    @field_validator("warehouse_url", "source_url")
    @classmethod
    def _a_libpq_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, so that a typo is one message naming the setting; the URL itself is never
        # repeated (it holds the password).
        if value is None:
            return value
        try:
            params = parse_url(value.get_secret_value())
        except ValueError:
            params = None
        if params is None or not value.get_secret_value().startswith(("postgresql:", "postgres:")):
            raise ValueError(
                "not a libpq URL such as postgresql://user:password@host:5432/database"
            )
        return value

    @field_validator("earliest_plausible_date")
    @classmethod
    def _within_pandas_range(cls, value: date) -> date:
        # Files are judged with pandas, which holds no datetime before 1677-09-21: a bound earlier
        # than that could not be judged the same way for files and for database tables.
        if value < date(1678, 1, 1):
            raise ValueError(
                f"EARLIEST_PLAUSIBLE_DATE {value} is before 1678-01-01, the earliest date the "
                "file contracts (pandas) can compare; set 1678-01-01 or later"
            )
        return value

    @property
    def data_dir(self) -> Path:
        """Local state: the embedded server, Prefect's temporary API, GX's stores, the log.

        WAREHOUSE_DIR if given; else `.warehouse/` for the embedded warehouse, and
        `.warehouse/servers/<host>-<port>-<database>/` for a server, so that a real warehouse
        never shares Prefect's or GX's state (or the demo's landing folder) with the demo or
        with another server.
        """
        if self.warehouse_dir is not None:
            return self.warehouse_dir
        base = self.project_root / ".warehouse"
        if self.warehouse_url is None:
            return base
        return base / "servers" / folder_name(parse_url(self.warehouse_url.get_secret_value()))

    @property
    def landing_path(self) -> Path | None:
        """Where feed files arrive: LANDING_DIR; the demo's folder for the embedded warehouse;
        None for a server warehouse without LANDING_DIR (no demo default: feeds are off)."""
        if self.landing_dir is not None:
            return self.landing_dir
        return self.data_dir / "landing" if self.uses_embedded_warehouse else None

    @property
    def uses_embedded_warehouse(self) -> bool:
        return self.warehouse_url is None

    @property
    def uses_demo_source(self) -> bool:
        """The simulated core bank, a database beside the embedded warehouse: the only source
        bankdw creates and writes by itself."""
        return self.warehouse_url is None and self.source_url is None


def env_file_path() -> Path:
    """The `.env` bankdw reads: the repository root's (PROJECT_ROOT's if set), not the current
    folder's, so that a command run from `models/` targets the same warehouse as from the root."""
    root = os.environ.get("PROJECT_ROOT")
    return (Path(root) if root else find_project_root()) / ".env"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings(_env_file=env_file_path())  # type: ignore[call-arg]


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between scenarios)."""
    get_settings.cache_clear()
