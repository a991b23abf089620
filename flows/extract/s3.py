"""Feed files from an S3 bucket (or MinIO, when `S3_ENDPOINT_URL` is set) through prefect-aws.

Objects are listed under `S3_PREFIX` as `<prefix><feed>/<file>` and each is downloaded to a
temporary file (boto3 streams it to disk) before it is loaded like a landing file: no object is
ever held in memory, and the object key is the file's name in ops.files and raw.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from prefect_aws import AwsClientParameters, AwsCredentials, MinIOCredentials, S3Bucket

from flows.extract.files import FEEDS, FeedFile, feed_format
from flows.settings import Settings, get_settings


@dataclass(frozen=True)
class FeedObject:
    """An object that holds a feed file."""

    key: str
    entity: str
    size: int
    etag: str | None


def s3_bucket_from_settings(settings: Settings | None = None) -> S3Bucket:
    """The bucket named by S3_BUCKET; MinIO credentials when S3_ENDPOINT_URL is set.

    Unset AWS keys leave boto3 its default chain (environment, profile, instance role).
    """
    settings = settings or get_settings()
    if not settings.s3_bucket:
        raise ValueError("S3_BUCKET is not set: there is no bucket to read feed files from")
    key_id = settings.aws_access_key_id.get_secret_value() if settings.aws_access_key_id else None
    secret = settings.aws_secret_access_key
    if settings.s3_endpoint_url:
        if key_id is None or secret is None:
            raise ValueError("S3_ENDPOINT_URL needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        credentials: AwsCredentials | MinIOCredentials = MinIOCredentials(
            minio_root_user=key_id,
            minio_root_password=secret,
            region_name=settings.aws_region,
            aws_client_parameters=AwsClientParameters(endpoint_url=settings.s3_endpoint_url),
        )
    else:
        credentials = AwsCredentials(
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            region_name=settings.aws_region,
        )
    return S3Bucket(bucket_name=settings.s3_bucket, credentials=credentials)


def feed_of_key(key: str, prefix: str) -> str | None:
    """The feed an object key belongs to (`<prefix><feed>/.../<file>`), or None."""
    if not key.startswith(prefix) or key.endswith("/"):
        return None
    parts = PurePosixPath(key[len(prefix) :]).parts
    if len(parts) < 2 or any(p.startswith(".") for p in parts):
        return None
    return parts[0] if feed_format(parts[0], parts[-1]) else None


def list_feed_objects(bucket: S3Bucket, prefix: str) -> dict[str, list[FeedObject]]:
    """Feed objects under `prefix`, per feed, in key order (only keys and sizes in memory)."""
    found: dict[str, list[FeedObject]] = {}
    folder = bucket.bucket_folder.strip("/")
    full_prefix = f"{folder}/{prefix}" if folder else prefix
    for item in bucket.list_objects(folder=prefix):
        feed = feed_of_key(item["Key"], full_prefix)
        if feed is not None:
            found.setdefault(feed, []).append(
                FeedObject(item["Key"], feed, int(item.get("Size", 0)), item.get("ETag"))
            )
    return {feed: sorted(found[feed], key=lambda o: o.key) for feed in FEEDS if feed in found}


def key_within_folder(bucket: S3Bucket, key: str) -> str:
    """S3Bucket prefixes its `bucket_folder` to paths: listed keys already carry it."""
    folder = bucket.bucket_folder.strip("/")
    return key[len(folder) + 1 :] if folder and key.startswith(folder + "/") else key


@contextmanager
def downloaded(bucket: S3Bucket, obj: FeedObject) -> Iterator[FeedFile]:
    """The object as a FeedFile on local disk, deleted on exit."""
    with tempfile.TemporaryDirectory(prefix="bankdw-s3-") as folder:
        # Keep the key's file name: its suffix says how to parse the file.
        path = Path(folder) / PurePosixPath(obj.key).name
        bucket.download_object_to_path(key_within_folder(bucket, obj.key), path)
        yield FeedFile("s3", obj.entity, obj.key, path, obj.etag)
