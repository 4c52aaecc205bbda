"""boto3 clients for an environment: the emulator endpoint and fake keys for local, the normal
credential chain for real AWS."""

from __future__ import annotations

from toolkit.config import EnvironmentConfig

# Fake credentials for an emulator endpoint (moto accepts any); shared with the stacks' provider.
EMULATOR_ACCESS_KEY = EMULATOR_SECRET_KEY = "test"
EMULATOR_KEYS = {"aws_access_key_id": EMULATOR_ACCESS_KEY, "aws_secret_access_key": EMULATOR_SECRET_KEY}


def client(service: str, config: EnvironmentConfig):
    import boto3

    extra = {"endpoint_url": config.aws.endpoint_url, **EMULATOR_KEYS} if config.aws.endpoint_url else {}
    return boto3.client(service, region_name=config.aws.region, **extra)


def emulator_environment(config: EnvironmentConfig) -> dict[str, str]:
    """Environment variables that point any AWS SDK at the environment's emulator (boto3 reads AWS_ENDPOINT_URL)."""
    if not config.aws.endpoint_url:
        return {}
    return {"AWS_ENDPOINT_URL": config.aws.endpoint_url, "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_KEY, "AWS_REGION": config.aws.region, "AWS_DEFAULT_REGION": config.aws.region}
