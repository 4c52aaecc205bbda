"""The S3 artifact store against moto's server: datasets in, artifacts out, sha256 checked."""

from __future__ import annotations

import json

import boto3
import pytest

from conftest import HEART
from toolkit.aws import client
from toolkit.errors import ToolkitError
from toolkit.store.artifacts import upload_artifact
from toolkit.store.s3 import download_file, upload_file


@pytest.fixture
def bucket(local):
    name = f"artifacts-{abs(hash(local.aws.endpoint_url)) % 10**6}"
    s3 = client("s3", local)
    if name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=name)
    return name


def test_dataset_upload_is_skipped_when_unchanged_and_download_is_checked(local, bucket, tmp_path):
    url = f"s3://{bucket}/datasets/heart.csv"
    assert upload_file(local, HEART, url) is True
    assert upload_file(local, HEART, url) is False  # same sha256: nothing to do
    copy = download_file(local, url, tmp_path)
    assert copy.read_bytes() == HEART.read_bytes()

    s3 = client("s3", local)
    head = s3.head_object(Bucket=bucket, Key="datasets/heart.csv")
    s3.put_object(Bucket=bucket, Key="datasets/heart.csv", Body=b"tampered", Metadata=head["Metadata"])
    with pytest.raises(ToolkitError, match="do not match the sha256"):
        download_file(local, url)


def test_missing_object_is_a_clear_error(local, bucket):
    with pytest.raises(ToolkitError, match="S3 head of s3://.*/nope.csv failed"):
        download_file(local, f"s3://{bucket}/nope.csv")


def test_train_reads_s3_and_uploads_the_artifact(local, bucket, repo_copy, run_cli):
    """What the training Job runs: `toolkit train --data s3://... --upload s3://...`."""
    env_file = repo_copy / "environments" / "local.yaml"
    env_file.write_text(env_file.read_text().replace("http://127.0.0.1:4566", local.aws.endpoint_url))
    upload_file(local, HEART, f"s3://{bucket}/datasets/heart-cleveland.csv")
    result = run_cli("train", "--env", "local", "--epochs", "5", "--data", f"s3://{bucket}/datasets/heart-cleveland.csv",
                     "--upload", f"s3://{bucket}/models/local/", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    prefix = f"models/local/{summary['version']}/"
    assert summary["uploaded"] == f"s3://{bucket}/{prefix}"
    s3 = boto3.client("s3", region_name=local.aws.region, endpoint_url=local.aws.endpoint_url,
                      aws_access_key_id="test", aws_secret_access_key="test")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]}
    assert keys == {prefix + name for name in ("manifest.json", "metrics.json", "training_curves.png", "confusion_matrix.png",
                                               "data_report.json", "weights.npz", "model.sig")}
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix + "manifest.json")["Body"].read())
    weights = s3.head_object(Bucket=bucket, Key=prefix + "weights.npz")
    assert weights["Metadata"]["sha256"] == manifest["files"]["weights.npz"]["sha256"]


def test_upload_refuses_a_corrupt_artifact(local, bucket, model_dir, tmp_path):
    import shutil

    from toolkit.errors import ArtifactError

    damaged = tmp_path / "model"
    shutil.copytree(model_dir, damaged)
    (damaged / "weights.npz").write_bytes(b"x")
    with pytest.raises(ArtifactError, match=r"weights.npz: size is 1 bytes, the manifest says \d+"):
        upload_artifact(local, damaged, f"s3://{bucket}/models/")
