"""Registry credentials: an ECR login (`get_authorization_token`, user AWS), for real AWS and,
through moto, for the local registry whose htpasswd holds the same login."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from toolkit.config import EnvironmentConfig
from toolkit.errors import ToolkitError


@dataclass
class RegistryLogin:
    host: str  # host[:port] images are pushed to
    username: str
    password: str

    def auth_config(self) -> dict:
        return {"username": self.username, "password": self.password, "serveraddress": self.host}


def registry_login(config: EnvironmentConfig) -> RegistryLogin:
    """Credentials from ECR (`get_authorization_token`, user AWS), for real AWS and, through moto,
    for the local environment; the host is ECR's endpoint unless `registry.endpoint` overrides it."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from toolkit.aws import client

    try:
        # The environment's own registry by account, also when the caller is another account's role (promote).
        data = client("ecr", config).get_authorization_token(registryIds=[config.aws.account_id])["authorizationData"][0]
    except NoCredentialsError:
        raise ToolkitError(f"no AWS credentials to get an ECR login for {config.name}: configure AWS credentials "
                           "(AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and try again.") from None
    except (BotoCoreError, ClientError) as exc:
        raise ToolkitError(f"ECR refused the login for {config.name}: {exc}") from None
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = config.registry.endpoint or data["proxyEndpoint"].removeprefix("https://")
    return RegistryLogin(host, username, password)
