"""The one settings object: environment variables (prefix-free, as users expect) and `.env`."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def find_project_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder above `start` holding config.yaml and flows/."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "config.yaml").is_file() and (folder / "flows").is_dir():
            return folder
    # Installed elsewhere (site-packages): fall back to the package's own checkout.
    return Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_file_encoding="utf-8")

    # Connections. Unset means the embedded PostgreSQL under .warehouse/.
    warehouse_url: SecretStr | None = None
    source_url: SecretStr | None = None
    project_root: Path = Field(default_factory=find_project_root)
    warehouse_dir: Path | None = None  # default: <project_root>/.warehouse
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
    landing_dir: Path | None = None  # default: <data_dir>/landing
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

    # Transformation.
    sqlmesh_gateway: str = "warehouse"
    # Every path that runs SQLMesh takes one lock in the warehouse; a second one waits this long
    # for it (saying who holds it), then gives up.
    sqlmesh_lock_timeout_seconds: float = 600.0
    # The zone that decides which calendar day a timestamp falls on (booking dates, days in gold).
    bank_timezone: str = "UTC"

    # Retries for tasks that touch the network or a database.
    task_retries: int = 3
    task_retry_delay_seconds: float = 2.0

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
        return self.warehouse_dir or self.project_root / ".warehouse"

    @property
    def landing_path(self) -> Path:
        return self.landing_dir or self.data_dir / "landing"

    @property
    def uses_embedded_warehouse(self) -> bool:
        return self.warehouse_url is None

    @property
    def uses_embedded_source(self) -> bool:
        return self.source_url is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget the cached settings (tests change the environment between scenarios)."""
    get_settings.cache_clear()
