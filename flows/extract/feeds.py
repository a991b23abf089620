"""The Prefect flow that loads feed files (landing folder or S3 bucket) into raw.

Discovery first (discovery.py): only new or changed files become tasks, one task per file.
Files of one feed load one after the other in name order (a later file may carry a newer
version of the same opportunity or order); the feeds load side by side. A file refused by its
contract fails its task without retries; the files after it still load, and the flow fails at
the end so that the run shows the refusal. A file set aside (a link, or still being written) is
reported with the ignored ones; it fails nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect import allow_failure, flow, get_run_logger
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait

from flows.extract import ledger
from flows.extract.discovery import Discovery, discover_landing, discover_s3
from flows.extract.feed_file import FeedFile, FileSource, IgnoredFile, RepeatedFile
from flows.extract.files import FeedBatchResult, load_feed_file
from flows.extract.landing import SetAsideError
from flows.load import record_failed_batch
from flows.settings import get_settings
from flows.tasks import pipeline_task
from flows.warehouse import connect_warehouse

if TYPE_CHECKING:  # boto3 and prefect-aws cost a second to import: only S3 needs them
    from prefect_aws import S3Bucket

FileOutcome = FeedBatchResult | RepeatedFile | IgnoredFile | None
NO_LANDING = "no LANDING_DIR or S3_BUCKET is set"


@dataclass
class FeedRun:
    """What a feed run did, for the run summary: one list per kind of outcome."""

    batches: list[FeedBatchResult] = field(default_factory=list)
    repeated: list[RepeatedFile] = field(default_factory=list)  # bytes loaded before
    ignored: list[IgnoredFile] = field(default_factory=list)  # with why
    discovery: str = ""  # what discovery listed and kept, and how long it took
    files_read: int = 0  # files that became tasks: the only ones read and hashed
    off: str | None = None  # why no feed was looked for (no landing folder or bucket)

    @property
    def resent(self) -> list[str]:
        """Files re-sent under their name with new content, each loaded as its next version."""
        return [note for b in self.batches if (note := b.describe_resend())]


def load_one_file(file: FeedFile) -> FileOutcome:
    """Load a local file as one batch; a failure is recorded (with its file) and re-raised."""
    from prefect.runtime import flow_run

    logger = get_run_logger()
    record_source = get_settings().feed_record_source
    try:
        with connect_warehouse(autocommit=True) as conn:
            outcome = load_feed_file(conn, file, record_source, flow_run_id=flow_run.id)
    except SetAsideError as err:
        logger.warning("%s", err)
        return err.ignored
    except Exception as err:
        record_failed_batch(record_source, file.entity, err, flow_run.id, source_file=file.name)
        raise
    if isinstance(outcome, RepeatedFile):
        logger.warning("%s", outcome.describe())
    elif isinstance(outcome, FeedBatchResult) and outcome.resent:
        logger.warning("%s", outcome.describe_resend())
    return outcome


# Whether a file is new is ops.files' call, never a cached task result's.
@pipeline_task("load {file.name}", cache_policy=NO_CACHE)
def load_landing_file(file: FeedFile) -> FileOutcome:
    return load_one_file(file)


@pipeline_task("load s3 {file.name}", cache_policy=NO_CACHE)
def load_s3_object(bucket: Any, file: FeedFile) -> FileOutcome:  # bucket: prefect_aws.S3Bucket
    from flows.extract.s3 import downloaded

    with downloaded(bucket, file) as local:
        return load_one_file(local)


def chain_per_feed(submit, groups: dict[str, list]) -> list[PrefectFuture]:  # type: ignore[no-untyped-def]
    """Submit each feed's items in order, each after the previous one, failed or not."""
    futures = []
    for items in groups.values():
        previous = None
        for item in items:
            previous = submit(item, wait_for=[allow_failure(previous)] if previous else None)
            futures.append(previous)
    return futures


def settle(futures: list[PrefectFuture]) -> tuple[list[FileOutcome], list[Exception]]:
    """Every task's outcome, and the failures, once all ran."""
    wait(futures)
    outcomes, failures = [], []
    for future in futures:
        try:
            outcomes.append(future.result())
        except Exception as err:
            failures.append(err)
    return outcomes, failures


def summarise(discovery: Discovery, outcomes: list[FileOutcome]) -> FeedRun:
    run = FeedRun(
        ignored=list(discovery.ignored),
        discovery=discovery.describe(),
        files_read=discovery.new,
    )
    for outcome in outcomes:
        if isinstance(outcome, FeedBatchResult):
            run.batches.append(outcome)
        elif isinstance(outcome, RepeatedFile):
            run.repeated.append(outcome)
        elif isinstance(outcome, IgnoredFile):
            run.ignored.append(outcome)
    return run


def keep_ignored(source: FileSource, run: FeedRun) -> None:
    """ops.ignored_files becomes what this run ignored."""
    record_source = get_settings().feed_record_source
    with connect_warehouse(autocommit=True) as conn:
        ledger.record_ignored(conn, record_source, source, run.ignored)


@flow(name="bankdw-extract-feeds")
def extract_feeds_flow(source: FileSource = "landing", bucket: Any = None) -> FeedRun:
    """Every new feed file into raw: from the landing folder, or from S3 (`source="s3"`).

    `bucket` overrides the bucket the settings describe (S3_BUCKET, S3_ENDPOINT_URL, ...).
    """
    return load_new_feed_files(source, bucket)


def load_new_feed_files(source: FileSource = "landing", bucket: S3Bucket | None = None) -> FeedRun:
    """The work of extract_feeds_flow, inside whichever flow calls it (a subflow costs a second
    of Prefect's bookkeeping, which a run with nothing new should not pay)."""
    settings = get_settings()
    if source not in ("landing", "s3"):
        raise ValueError(f"source must be 'landing' or 's3', not {source!r}")
    if source == "landing" and settings.landing_path is None:
        # A server warehouse gets no demo landing folder: feeds wait until one is named.
        return FeedRun(off=NO_LANDING)
    if source == "s3":
        from flows.extract.s3 import s3_bucket_from_settings

        bucket = bucket or s3_bucket_from_settings(settings)
    with connect_warehouse(autocommit=True) as conn:
        if source == "landing":
            discovery = discover_landing(
                conn, settings.landing_path, settings.landing_quiet_seconds
            )
        else:
            discovery = discover_s3(conn, bucket, settings.s3_prefix)
    get_run_logger().info("feed discovery: %s", discovery.describe())
    if source == "landing":
        futures = chain_per_feed(lambda f, **kw: load_landing_file.submit(f, **kw), discovery.files)
    else:
        futures = chain_per_feed(
            lambda f, **kw: load_s3_object.submit(bucket, f, **kw), discovery.files
        )
    outcomes, failures = settle(futures)
    run = summarise(discovery, outcomes)
    keep_ignored(source, run)
    if failures:
        raise failures[0]
    return run
