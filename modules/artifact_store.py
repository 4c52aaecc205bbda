"""S3 bucket for datasets and models: versioning, SSE-KMS, public access block, TLS-only policy."""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import S3BucketVersioningA, S3BucketVersioningVersioningConfiguration
from constructs import Construct

from modules.cross_account import grant_to_roles
from modules.kms import EncryptionKey
from modules.lifecycle import protect
from toolkit.config import ArtifactStoreConfig


def bucket_policy(bucket_arn: str, readers: dict[str, list[str]] | None = None, deny_insecure_transport: bool = True,
                  only_writers: dict[str, list[str]] | None = None) -> str | None:
    """TLS only; `readers` (role ARN of another environment → key prefixes) may read those prefixes;
    under each prefix of `only_writers` (→ principal ARNs) nobody else may write or delete, whatever
    its identity policy says (an empty list: nobody at all). None when there is nothing to say."""
    # Fn.jsonencode, not json.dumps: a JSON string with references in it is mangled by `cdktf synth --hcl`.
    statements = [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [bucket_arn, f"{bucket_arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }] if deny_insecure_transport else []
    for index, (role, prefixes) in enumerate(sorted((readers or {}).items())):
        statements.append(grant_to_roles(f"PromotionTargetReads{index}", [role], ["s3:GetObject"],
                                         [f"{bucket_arn}/{prefix}*" for prefix in prefixes]))
    for index, (prefix, writers) in enumerate(sorted((only_writers or {}).items())):
        deny = {"Sid": f"OnlyItsWritersWrite{index}", "Effect": "Deny", "Principal": "*",
                "Action": ["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention", "s3:PutObjectLegalHold"],
                "Resource": f"{bucket_arn}/{prefix}*"}
        if writers:
            deny["Condition"] = {"ArnNotEquals": {"aws:PrincipalArn": sorted(writers)}}
        statements.append(deny)
    return Fn.jsonencode({"Version": "2012-10-17", "Statement": statements}) if statements else None


class ArtifactStore(Construct):
    """The bucket training writes models to and serving reads them from.

    Args:
        config: bucket name, prefixes, noncurrent-version expiry.
        account_id: owner of the KMS key.
        prevent_destroy: protect the bucket from `terraform destroy`.
        region / readers: roles of other environments (→ key prefixes) that may read here, and
            decrypt through S3 in `region` (the CI deploy roles promoting from here).
        deny_insecure_transport: refuse every request not made over TLS (off only where the
            store cannot be reached over TLS at all: infra/emulator.py).
        only_writers: key prefix → the only principals that may write there (the promote role for
            `promotions/<env>/`).
    """

    def __init__(self, scope: Construct, id: str, *, config: ArtifactStoreConfig, account_id: str, prevent_destroy: bool = False,
                 region: str = "", readers: dict[str, list[str]] | None = None, deny_insecure_transport: bool = True,
                 only_writers: dict[str, list[str]] | None = None) -> None:
        super().__init__(scope, id)
        self.key = EncryptionKey(self, "key", alias=f"{config.bucket}-s3", account_id=account_id,
                                 description=f"S3 {config.bucket}", prevent_destroy=prevent_destroy,
                                 decrypt_through=(f"s3.{region}.amazonaws.com", sorted(readers or {})),
                                 region=region, via_services=["s3", "secretsmanager"])
        self.bucket = S3Bucket(self, "bucket", bucket=config.bucket, lifecycle=protect(prevent_destroy))
        S3BucketPublicAccessBlock(self, "public-access-block", bucket=self.bucket.id, block_public_acls=True,
                                  block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True)
        S3BucketVersioningA(self, "versioning", bucket=self.bucket.id,
                            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"))
        S3BucketServerSideEncryptionConfigurationA(self, "encryption", bucket=self.bucket.id, rule=[
            S3BucketServerSideEncryptionConfigurationRuleA(
                apply_server_side_encryption_by_default=S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                    sse_algorithm="aws:kms", kms_master_key_id=self.key.arn),
                bucket_key_enabled=True,
            )])
        S3BucketLifecycleConfiguration(self, "lifecycle", bucket=self.bucket.id, rule=[
            S3BucketLifecycleConfigurationRule(
                id="expire-noncurrent-versions", status="Enabled",
                filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                noncurrent_version_expiration=[S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                    noncurrent_days=config.noncurrent_version_expiry_days)],
                abort_incomplete_multipart_upload=[S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                    days_after_initiation=7)],
            )])
        policy = bucket_policy(self.bucket.arn, readers, deny_insecure_transport, only_writers)
        if policy is not None:
            S3BucketPolicy(self, "tls-only", bucket=self.bucket.id, policy=policy)
        self.name = self.bucket.bucket
        self.arn = self.bucket.arn
