"""ECR repository: immutable tags, scan on push, KMS encryption, lifecycle policy."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.ecr_lifecycle_policy import EcrLifecyclePolicy
from cdktf_cdktf_provider_aws.ecr_repository import (
    EcrRepository,
    EcrRepositoryEncryptionConfiguration,
    EcrRepositoryImageScanningConfiguration,
)
from cdktf_cdktf_provider_aws.ecr_repository_policy import EcrRepositoryPolicy
from constructs import Construct

from modules.cross_account import grant_to_roles
from modules.kms import EncryptionKey
from modules.lifecycle import protect
from toolkit.config import RegistryConfig

# What pulling an image by digest takes (the CI deploy role here, and promotion targets' roles).
PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability", "ecr:DescribeImages"]


def lifecycle_policy(keep_releases: int, untagged_expiry_days: int) -> str:
    """Expire untagged images after N days; keep the newest `keep_releases` tagged ones."""
    return json.dumps({"rules": [
        {"rulePriority": 1, "description": f"expire untagged images after {untagged_expiry_days} days",
         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                       "countNumber": untagged_expiry_days},
         "action": {"type": "expire"}},
        {"rulePriority": 2, "description": f"keep the last {keep_releases} releases",
         "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_releases},
         "action": {"type": "expire"}},
    ]})


class Registry(Construct):
    """The serving image repository.

    Args:
        config: name, tag immutability, scan on push, retention.
        account_id / region: owner and region of the KMS key.
        prevent_destroy: protect the repository (and its key) from `terraform destroy`.
        pull_roles: roles of other environments that may pull (the CI deploy roles promoting from here).
    """

    def __init__(self, scope: Construct, id: str, *, config: RegistryConfig, account_id: str, prevent_destroy: bool = False,
                 pull_roles: list[str] = (), region: str = "") -> None:
        super().__init__(scope, id)
        key = EncryptionKey(self, "key", alias=f"{config.name.replace('/', '-')}-ecr", account_id=account_id,
                            description=f"ECR {config.name}", prevent_destroy=prevent_destroy, region=region, via_services=["ecr"])
        self.repository = EcrRepository(
            self, "repository", name=config.name,
            image_tag_mutability="IMMUTABLE" if config.tag_immutability else "MUTABLE",
            image_scanning_configuration=EcrRepositoryImageScanningConfiguration(scan_on_push=config.scan_on_push),
            encryption_configuration=[EcrRepositoryEncryptionConfiguration(encryption_type="KMS", kms_key=key.arn)],
            lifecycle=protect(prevent_destroy),
        )
        EcrLifecyclePolicy(self, "lifecycle", repository=self.repository.name,
                           policy=lifecycle_policy(config.keep_releases, config.untagged_expiry_days))
        if pull_roles:
            EcrRepositoryPolicy(self, "promotion-pull", repository=self.repository.name, policy=json.dumps({
                "Version": "2012-10-17", "Statement": [grant_to_roles("PromotionTargetsPull", list(pull_roles), PULL_ACTIONS, "*")]}))
        self.url = self.repository.repository_url
        self.arn = self.repository.arn
