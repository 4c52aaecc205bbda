"""The Docker engine client: $DOCKER_HOST, else the system socket if it answers, else the engine
the local environment starts under `.local/docker`."""

from __future__ import annotations

import os

from toolkit.errors import ToolkitError
from toolkit.paths import ProjectPaths

SYSTEM_SOCKET = "unix:///var/run/docker.sock"


def _unreachable() -> tuple[type[BaseException], ...]:
    """What the docker SDK raises for an engine that is not there, refuses, or denies us."""
    import docker
    import requests

    return docker.errors.DockerException, requests.RequestException, OSError


def docker_answers(base_url: str) -> bool:
    import docker

    try:
        docker.DockerClient(base_url=base_url, timeout=3).ping()
        return True
    except _unreachable():
        return False


def docker_base_url(paths: ProjectPaths) -> str:
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if docker_answers(SYSTEM_SOCKET):
        return SYSTEM_SOCKET
    return f"unix://{paths.docker_socket}"


def docker_client(paths: ProjectPaths):
    import docker

    url = docker_base_url(paths)
    try:
        client = docker.DockerClient(base_url=url, timeout=600)
        client.ping()
    except _unreachable() as exc:
        raise ToolkitError(f"no Docker engine answers at {url} ({exc}); run `toolkit local up`.") from None
    return client
