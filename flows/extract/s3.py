"""Feed files from an S3 bucket (or MinIO, when `S3_ENDPOINT_URL` is set) through prefect-aws.

Objects are listed under `S3_PREFIX` as `<prefix><feed>/<file>`; the ledger keeps those whose
key and ETag it has not seen, and only those are downloaded, each to a temporary file (boto3
streams it to disk), and loaded like a landing file: no object is ever held in memory, and the
object key is the file's name in ops.files and raw. An upload is atomic per object: a key is
listed only once its object is complete, so S3 needs no landing protocol.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from prefect_aws import AwsClientParameters, AwsCredentials, MinIOCredentials, S3Bucket

from flows.extract.feed_file import FEEDS, FeedFile, IgnoredFile, why_ignored_name
from flows.settings import Settings, get_settings


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


@dataclass
class BucketListing:
    """Feed objects under the prefix (per feed, in key order) and the keys that were ignored."""

    files: dict[str, list[FeedFile]] = field(default_factory=dict)
    ignored: list[IgnoredFile] = field(default_factory=list)


def why_ignored_key(key: str, prefix: str) -> tuple[str | None, str | None]:
    """(feed, None) for a feed object's key (`<prefix><feed>/.../<file>`), else (None, reason)."""
    parts = key[len(prefix) :].split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None, "unsafe_key"
    if any(p.startswith(".") for p in parts):
        return None, "hidden"
    if len(parts) < 2 or parts[0] not in FEEDS:
        return None, "not_in_a_feed"
    reason = why_ignored_name(parts[-1])
    return (None, reason) if reason else (parts[0], None)


def list_feed_objects(bucket: S3Bucket, prefix: str) -> BucketListing:
    """Feed objects under `prefix` (only keys, sizes and ETags in memory); nothing outside it is
    listed, so nothing outside it is read. Folder placeholders (keys ending in '/') are skipped."""
    listing = BucketListing()
    folder = bucket.bucket_folder.strip("/")
    full_prefix = f"{folder}/{prefix}" if folder else prefix
    for item in bucket.list_objects(folder=prefix):
        key = item["Key"]
        if not key.startswith(full_prefix) or key.endswith("/"):
            continue
        feed, reason = why_ignored_key(key, full_prefix)
        if feed is None:
            listing.ignored.append(IgnoredFile("s3", key, reason or "not_in_a_feed"))
            continue
        listing.files.setdefault(feed, []).append(
            FeedFile("s3", feed, key, int(item.get("Size", 0)), etag=item.get("ETag"))
        )
    listing.files = {
        feed: sorted(listing.files[feed], key=lambda f: f.name)
        for feed in FEEDS
        if feed in listing.files
    }
    return listing


def key_within_folder(bucket: S3Bucket, key: str) -> str:
    """S3Bucket prefixes its `bucket_folder` to paths: listed keys already carry it."""
    folder = bucket.bucket_folder.strip("/")
    return key[len(folder) + 1 :] if folder and key.startswith(folder + "/") else key


@contextmanager
def downloaded(bucket: S3Bucket, file: FeedFile) -> Iterator[FeedFile]:
    """The object as a FeedFile on local disk, deleted on exit."""
    with tempfile.TemporaryDirectory(prefix="bankdw-s3-") as folder:
        # Keep the key's file name: its suffix says how to parse the file.
        path = Path(folder) / PurePosixPath(file.name).name
        bucket.download_object_to_path(key_within_folder(bucket, file.name), path)
        yield replace(file, path=path)
