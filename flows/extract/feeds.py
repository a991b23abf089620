"""The Prefect flow that loads feed files (landing folder or S3 bucket) into raw.

One task per file. Files of one feed load one after the other in name order (a later file may
carry a newer version of the same opportunity or order); the feeds load side by side. A file
refused by its contract fails its task without retries; the files after it still load, and the
flow fails at the end so that the run shows the refusal.
"""

from __future__ import annotations

from prefect import allow_failure, flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect_aws import S3Bucket

from flows.extract.files import FeedFile, find_landing_files, load_feed_file
from flows.extract.postgres import BatchResult
from flows.extract.s3 import FeedObject, downloaded, list_feed_objects, s3_bucket_from_settings
from flows.load import record_failed_batch
from flows.retries import BACKOFF, RETRIES, retry_unless_refused
from flows.settings import get_settings
from flows.warehouse import connect_warehouse


def load_one_file(file: FeedFile) -> BatchResult | None:
    """Load a local file as one batch; a failure is recorded (with its file) and re-raised."""
    from prefect.runtime import flow_run

    logger = get_run_logger()
    record_source = get_settings().feed_record_source
    try:
        with connect_warehouse(autocommit=True) as conn:
            result = load_feed_file(conn, file, record_source, flow_run_id=flow_run.id)
    except Exception as err:
        record_failed_batch(record_source, file.entity, err, flow_run.id, source_file=file.name)
        raise
    if result is None:
        logger.info("%s: loaded before with the same content, skipped", file.name)
    elif result.resent:
        logger.warning("%s", result.drift)
    elif result.drift:
        logger.info("%s", result.drift)
    return result


@task(
    retries=RETRIES,
    retry_delay_seconds=BACKOFF,
    retry_condition_fn=retry_unless_refused,
    # Whether a file is new is ops.files' call, never a cached task result's.
    cache_policy=NO_CACHE,
    task_run_name="load {file.name}",
)
def load_landing_file(file: FeedFile) -> BatchResult | None:
    return load_one_file(file)


@task(
    retries=RETRIES,
    retry_delay_seconds=BACKOFF,
    retry_condition_fn=retry_unless_refused,
    cache_policy=NO_CACHE,
    task_run_name="load s3 {obj.key}",
)
def load_s3_object(bucket: S3Bucket, obj: FeedObject) -> BatchResult | None:
    if obj.etag and etag_already_loaded(obj):
        get_run_logger().info("%s: loaded before (same ETag), skipped", obj.key)
        return None
    with downloaded(bucket, obj) as file:
        return load_one_file(file)


def etag_already_loaded(obj: FeedObject) -> bool:
    from flows.extract.files import etag_loaded, prepare_ops

    with connect_warehouse(autocommit=True) as conn:
        prepare_ops(conn)
        return etag_loaded(conn, obj.key, obj.etag or "")


def chain_per_feed(submit, groups: dict[str, list]) -> list[PrefectFuture]:  # type: ignore[no-untyped-def]
    """Submit each feed's items in order, each after the previous one, failed or not."""
    futures = []
    for items in groups.values():
        previous = None
        for item in items:
            previous = submit(item, wait_for=[allow_failure(previous)] if previous else None)
            futures.append(previous)
    return futures


def collect(futures: list[PrefectFuture]) -> list[BatchResult]:
    """The loaded batches (skipped files left out); raises the first failure after all ran."""
    wait(futures)
    results, failures = [], []
    for future in futures:
        try:
            result = future.result()
        except Exception as err:
            failures.append(err)
            continue
        if result is not None:
            results.append(result)
    if failures:
        raise failures[0]
    return results


@flow(name="bankdw-extract-feeds")
def extract_feeds_flow(
    source: str = "landing", bucket: S3Bucket | None = None
) -> list[BatchResult]:
    """Every new feed file into raw: from the landing folder, or from S3 (`source="s3"`).

    `bucket` overrides the bucket the settings describe (S3_BUCKET, S3_ENDPOINT_URL, ...).
    """
    settings = get_settings()
    if source == "landing":
        files = find_landing_files(settings.landing_path)
        futures = chain_per_feed(lambda f, **kw: load_landing_file.submit(f, **kw), files)
    elif source == "s3":
        bucket = bucket or s3_bucket_from_settings(settings)
        objects = list_feed_objects(bucket, settings.s3_prefix)
        futures = chain_per_feed(lambda o, **kw: load_s3_object.submit(bucket, o, **kw), objects)
    else:
        raise ValueError(f"source must be 'landing' or 's3', not {source!r}")
    return collect(futures)
