"""Terraform remote state bucket: created once per environment, before the first deploy."""

from __future__ import annotations

from toolkit.aws import client
from toolkit.config import EnvironmentConfig


def bootstrap_state_bucket(config: EnvironmentConfig) -> bool:
    """Create the state bucket (versioned, encrypted, private) if missing; True if created."""
    s3 = client("s3", config)
    bucket = config.state.bucket
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if bucket in existing:
        return False
    kwargs = {} if config.aws.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": config.aws.region}}
    s3.create_bucket(Bucket=bucket, **kwargs)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    return True
