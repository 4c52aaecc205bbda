"""S3 for the artifact store: s3:// URLs, files up and down with their sha256, small JSON records.

Objects carry their sha256 in metadata; a download is checked against it, so a changed object is
refused rather than trained on or served. Every AWS failure becomes a ToolkitError naming the URL.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from toolkit.config import EnvironmentConfig
from toolkit.errors import BadInputError, ToolkitError
from toolkit.ml.table import sha256_file


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key) of an s3://bucket/key URL; BadInputError for anything else."""
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise BadInputError(f"{url!r} is not an s3://bucket/key URL.")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def _s3(config: EnvironmentConfig):
    from toolkit.aws import client

    return client("s3", config)


def _call(what: str, fn, *args, **kwargs):
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except (BotoCoreError, ClientError, Boto3Error) as exc:  # Boto3Error: upload_file's S3UploadFailedError (no bucket, ...)
        raise ToolkitError(f"S3 {what} failed: {exc}") from None


def upload_file(config: EnvironmentConfig, path: Path, url: str) -> bool:
    """Upload unless the object already has this sha256; True when it uploaded."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_url(url)
    digest = sha256_file(path)
    s3 = _s3(config)
    try:
        if s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256") == digest:
            return False
    except ClientError:
        pass  # not there yet
    _call(f"upload of {path} to {url}", s3.upload_file, str(path), bucket, key, ExtraArgs={"Metadata": {"sha256": digest}})
    return True


def upload_bytes(config: EnvironmentConfig, body: bytes, url: str) -> str:
    """An object from memory (a snapshot), with its sha256; returns `url`."""
    bucket, key = parse_s3_url(url)
    _call(f"upload to {url}", _s3(config).put_object, Bucket=bucket, Key=key, Body=body,
          Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    return url


def download_file(config: EnvironmentConfig, url: str, directory: Path | None = None) -> Path:
    """Download to `directory` (a temp dir by default) and check the sha256 in its metadata."""
    bucket, key = parse_s3_url(url)
    directory = directory or Path(tempfile.mkdtemp(prefix="toolkit-s3-"))
    target = directory / key.rsplit("/", 1)[-1]
    s3 = _s3(config)
    head = _call(f"head of {url}", s3.head_object, Bucket=bucket, Key=key)
    _call(f"download of {url}", s3.download_file, bucket, key, str(target))
    expected = head.get("Metadata", {}).get("sha256")
    if expected and sha256_file(target) != expected:
        raise ToolkitError(f"{url}: downloaded bytes do not match the sha256 stored with the object.")
    return target


def put_json(config: EnvironmentConfig, url: str, record: dict) -> str:
    """A small JSON record (a decision, a release, a promotion) as an object with its sha256; returns `url`."""
    bucket, key = parse_s3_url(url)
    body = json.dumps(record, indent=2, sort_keys=True).encode()
    _call(f"write of {url}", _s3(config).put_object, Bucket=bucket, Key=key, Body=body, ContentType="application/json",
          Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    return url


def get_json(config: EnvironmentConfig, url: str) -> dict | None:
    """The JSON record at `url`, checked against its sha256; None when there is none."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_url(url)
    try:
        response = _s3(config).get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise ToolkitError(f"S3 read of {url} failed: {exc}") from None
    body = response["Body"].read()
    expected = response.get("Metadata", {}).get("sha256")
    if expected and hashlib.sha256(body).hexdigest() != expected:
        raise ToolkitError(f"{url}: the record does not match the sha256 stored with it.")
    try:
        return json.loads(body)
    except ValueError:
        raise ToolkitError(f"{url}: not a JSON record.") from None


def list_folders(config: EnvironmentConfig, url: str) -> list[str]:
    """The s3:// URLs of the 'folders' right under `url` (…/), in key order."""
    bucket, key = parse_s3_url(url)
    listing = _call(f"listing of {url}", _s3(config).list_objects_v2, Bucket=bucket, Prefix=key, Delimiter="/")
    return [f"s3://{bucket}/{p['Prefix']}" for p in listing.get("CommonPrefixes", [])]


def read_objects(config: EnvironmentConfig, url: str) -> Iterator[bytes]:
    """The body of every object under `url`, in key order."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_s3_url(url)
    s3 = _s3(config)
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    except (BotoCoreError, ClientError) as exc:
        raise ToolkitError(f"reading {url} failed: {exc}") from None


def object_writer(bucket: str) -> Callable[[str, bytes], None]:
    """A PutObject of gzipped JSON lines into `bucket` with short timeouts and no client retries (the
    server's shipper retries itself); the endpoint (AWS_ENDPOINT_URL: the local moto) and credentials
    come from the process environment, as boto3 reads them."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))

    def put(key: str, body: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson", ContentEncoding="gzip")

    return put
