"""What a plan cannot know about cost: monthly usage, per resource of each type, from
`environments/<env>.usage.yaml` (validated like the environment file: unknown keys are named with
what is allowed). A missing file means the defaults below; the review says which figures use them.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolkit.errors import ConfigError
from toolkit.paths import ENVIRONMENTS_DIR


class _Usage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NatGatewayUsage(_Usage):
    processed_gb: float = Field(100, ge=0, description="GB through each NAT gateway a month (image pulls, S3 without an endpoint)")


class LogGroupUsage(_Usage):
    ingested_gb: float = Field(5, ge=0, description="GB written to each log group a month (EKS control plane, VPC flow logs)")
    stored_gb: float = Field(20, ge=0, description="GB each log group holds (its retention decides)")


class KmsKeyUsage(_Usage):
    requests: float = Field(20_000, ge=0, description="API requests to each key a month (S3 and EBS encryption, secrets)")


class SecretUsage(_Usage):
    api_calls: float = Field(10_000, ge=0, description="GetSecretValue and other calls to each secret a month")


class PrometheusUsage(_Usage):
    samples_ingested_millions: float = Field(1_000, ge=0, description="million samples written a month (series × scrapes)")
    stored_gb: float = Field(10, ge=0, description="GB the workspace holds")
    query_samples_billions: float = Field(10, ge=0, description="billion samples processed by queries and rules a month")


class BucketUsage(_Usage):
    stored_gb: float = Field(50, ge=0, description="GB in the artifact store (models, datasets, prediction logs)")
    write_requests_thousands: float = Field(100, ge=0, description="thousand PUT/COPY/POST/LIST requests a month")
    read_requests_thousands: float = Field(1_000, ge=0, description="thousand GET requests a month")


class RegistryUsage(_Usage):
    stored_gb: float = Field(10, ge=0, description="GB of images the repository holds (its lifecycle policy bounds it)")


class TopicUsage(_Usage):
    requests_millions: float = Field(0.1, ge=0, description="million publishes to each topic a month")


class QueueUsage(_Usage):
    requests_millions: float = Field(1, ge=0, description="million requests to each queue a month")


class UsageConfig(_Usage):
    """Per resource of its type, per month."""

    nat_gateway: NatGatewayUsage = Field(default_factory=NatGatewayUsage)
    log_group: LogGroupUsage = Field(default_factory=LogGroupUsage)
    kms_key: KmsKeyUsage = Field(default_factory=KmsKeyUsage)
    secret: SecretUsage = Field(default_factory=SecretUsage)
    prometheus: PrometheusUsage = Field(default_factory=PrometheusUsage)
    bucket: BucketUsage = Field(default_factory=BucketUsage)
    registry: RegistryUsage = Field(default_factory=RegistryUsage)
    topic: TopicUsage = Field(default_factory=TopicUsage)
    queue: QueueUsage = Field(default_factory=QueueUsage)


def usage_path(root: Path, env: str) -> Path:
    return root / ENVIRONMENTS_DIR / f"{env}.usage.yaml"


def load_usage(root: Path, env: str) -> tuple[UsageConfig, Path | None]:
    """(usage, the file it came from; None: no file, the defaults)."""
    from toolkit.config import _load_yaml, format_validation_error

    path = usage_path(root, env)
    if not path.exists():
        return UsageConfig(), None
    try:
        raw = _load_yaml(path.read_text(encoding="utf-8"), path) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it as YAML ({exc}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of resource kinds, got {type(raw).__name__}.")
    try:
        return UsageConfig.model_validate(raw), path
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc, UsageConfig)) from None
