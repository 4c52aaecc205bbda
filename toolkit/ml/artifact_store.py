"""The S3 artifact store: datasets in, model artifacts out (training Jobs), with sha256 checks.

Objects carry their sha256 in metadata; an artifact's manifest is uploaded last, so a reader that
finds the manifest finds every file it lists.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from toolkit.config import EnvironmentConfig
from toolkit.errors import BadInputError, ToolkitError
from toolkit.ml.table import sha256_file


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://") or "/" not in url[5:]:
        raise BadInputError(f"{url!r} is not an s3://bucket/key URL.")
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def _s3(config: EnvironmentConfig):
    from toolkit.aws import client

    return client("s3", config)


def _call(what: str, fn, *args, **kwargs):
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(*args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
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
    import hashlib
    import json

    bucket, key = parse_s3_url(url)
    body = json.dumps(record, indent=2, sort_keys=True).encode()
    _call(f"write of {url}", _s3(config).put_object, Bucket=bucket, Key=key, Body=body, ContentType="application/json",
          Metadata={"sha256": hashlib.sha256(body).hexdigest()})
    return url


def get_json(config: EnvironmentConfig, url: str) -> dict | None:
    """The JSON record at `url`, checked against its sha256; None when there is none."""
    import hashlib
    import json

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


def upload_artifact(config: EnvironmentConfig, artifact_dir: Path, prefix_url: str) -> str:
    """Upload a verified artifact (and its signature) to <prefix_url>/<version>/; returns that URL."""
    from toolkit.ml.artifacts import MANIFEST, verify_artifact
    from toolkit.ml.signing import SIGNATURE

    manifest = verify_artifact(artifact_dir)
    base = prefix_url.rstrip("/") + "/" + manifest["version"] + "/"
    signature = [SIGNATURE] if (artifact_dir / SIGNATURE).is_file() else []
    for name in [*sorted(manifest["files"]), MANIFEST, *signature]:  # the signature last: it vouches for the rest
        upload_file(config, artifact_dir / name, base + name)
    return base


def download_artifact(config: EnvironmentConfig, url: str, directory: Path) -> Path:
    """Download the artifact at <url> (…/<version>/) and its signature, if any, into
    `directory`/<version>/ and verify its checksums (the signature is checked where it is loaded)."""
    import json

    from toolkit.ml.artifacts import MANIFEST, verify_artifact
    from toolkit.ml.signing import SIGNATURE

    base = url.rstrip("/") + "/"
    target = directory / base.rstrip("/").rsplit("/", 1)[-1]
    target.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(download_file(config, base + MANIFEST, target).read_text())
    for name in manifest.get("files", {}):
        if "/" in name or name.startswith("."):
            raise ToolkitError(f"{base}{MANIFEST} lists {name!r}, which is not a plain file name.")
        download_file(config, base + name, target)
    try:
        download_file(config, base + SIGNATURE, target)
    except ToolkitError as exc:
        if "404" not in str(exc) and "Not Found" not in str(exc):
            raise
        (target / SIGNATURE).unlink(missing_ok=True)  # an unsigned artifact: refused where it is loaded, with that reason
    verify_artifact(target)
    return target
