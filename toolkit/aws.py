"""boto3 clients for an environment: the emulator endpoint and fake keys for local, the normal
credential chain for real AWS."""

from __future__ import annotations

from toolkit.config import EnvironmentConfig

EMULATOR_KEYS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}


def client(service: str, config: EnvironmentConfig):
    import boto3

    extra = {"endpoint_url": config.aws.endpoint_url, **EMULATOR_KEYS} if config.aws.endpoint_url else {}
    return boto3.client(service, region_name=config.aws.region, **extra)
