"""Registry credentials (an ECR login, also for the local registry through moto) and pushes."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Callable

from toolkit.config import EnvironmentConfig
from toolkit.context import Context
from toolkit.errors import BadInputError, ToolkitError
from toolkit.images.docker import docker_client

Progress = Callable[[str], None]


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
        data = client("ecr", config).get_authorization_token()["authorizationData"][0]
    except NoCredentialsError:
        raise ToolkitError(f"no AWS credentials to get an ECR login for {config.name}: configure AWS credentials "
                           "(AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and try again.") from None
    except (BotoCoreError, ClientError) as exc:
        raise ToolkitError(f"ECR refused the login for {config.name}: {exc}") from None
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = config.registry.endpoint or data["proxyEndpoint"].removeprefix("https://")
    return RegistryLogin(host, username, password)


def remote_digest(docker, reference: str, login: RegistryLogin) -> str | None:
    """The digest `reference` (repo:tag) has in the registry; None when the tag is not there."""
    import docker as docker_sdk

    try:
        return docker.api.inspect_distribution(reference, auth_config=login.auth_config())["Descriptor"]["digest"]
    except docker_sdk.errors.NotFound:
        return None
    except docker_sdk.errors.APIError as exc:
        if "manifest unknown" in str(exc) or "not found" in str(exc).lower():
            return None
        raise ToolkitError(f"cannot check whether {reference} exists: {exc.explanation or exc}") from None


def _local_digest(docker, image_ref: str, remote: str) -> str | None:
    """The digest this local image already has in `remote` (from an earlier push or pull)."""
    for repo_digest in docker.images.get(image_ref).attrs.get("RepoDigests", []):
        repository, _, digest = repo_digest.partition("@")
        if repository == remote:
            return digest
    return None


TRANSIENT = ("timeout", "connection reset", "connection refused", "503", "502", "504", "TLS handshake", "EOF")


def push_image(ctx: Context, image_ref: str, on_line: Progress = print, attempts: int = 4,
               on_event: Callable[[dict], None] | None = None) -> str:
    """Push a local image to the environment's registry; returns the pushed digest.

    Refuses `latest`, and a tag an immutable registry already holds with other content (pushing
    the very same image again is a no-op); retries transient errors with exponential backoff."""
    import docker as docker_sdk

    config = ctx.config
    docker = docker_client(ctx.paths)
    local_repository, _, tag = image_ref.rpartition(":")
    if not tag or tag == "latest":
        raise BadInputError(f"refusing to push {image_ref!r}: give an explicit release tag, never 'latest'.")
    login = registry_login(config)
    remote = f"{login.host}/{config.registry.name}"
    try:
        docker.images.get(image_ref).tag(remote, tag)
    except docker_sdk.errors.DockerException as exc:  # not found, or not a valid reference
        raise ToolkitError(f"no local image {image_ref}: {exc}") from None
    existing = remote_digest(docker, f"{remote}:{tag}", login) if config.registry.tag_immutability else None
    if existing is not None:
        # The same image pushed again (a re-run release) is a no-op; other content under the tag is refused.
        if existing == _local_digest(docker, image_ref, remote):
            on_line(f"{remote}:{tag} is already in the registry with this content ({existing})")
            return existing
        raise BadInputError(f"{remote}:{tag} already exists with other content ({existing}) and tags are immutable: "
                            "build a new version instead.")
    for attempt in range(1, attempts + 1):
        digest, error = None, None
        for chunk in docker.api.push(remote, tag, auth_config=login.auth_config(), stream=True, decode=True):
            if "error" in chunk:
                error = chunk["error"]
            elif "aux" in chunk and "Digest" in chunk["aux"]:
                digest = chunk["aux"]["Digest"]
            elif chunk.get("status") and chunk.get("id"):
                if on_event is not None:
                    on_event(chunk)  # per-layer status and progressDetail {current, total}
                elif chunk["status"] != "Pushing":
                    on_line(f"{chunk['id']}: {chunk['status']}")
        if error is None and digest:
            return digest
        if error and any(word.lower() in error.lower() for word in TRANSIENT) and attempt < attempts:
            delay = 2 ** attempt
            on_line(f"push failed ({error.strip()}); retrying in {delay} s ({attempt}/{attempts - 1})")
            time.sleep(delay)
            continue
        raise ToolkitError(f"push of {remote}:{tag} failed: {error or 'no digest returned'}")
    raise AssertionError("unreachable")
