"""Pushes to the environment's registry: ECR, or the local OCI registry standing in for it."""

from __future__ import annotations

import time
from typing import Callable

from toolkit.context import Context
from toolkit.errors import BadInputError, ToolkitError
from toolkit.images.build import BUILD_INPUTS_LABEL
from toolkit.images.distribution import RegistryClient
from toolkit.images.docker import docker_client
from toolkit.images.login import RegistryLogin, registry_login
from toolkit.lines import silent

Progress = Callable[[str], None]


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


def _reuse_existing(docker, login: RegistryLogin, image_ref: str, remote: str, tag: str, existing: str, on_line: Progress) -> str:
    """The tag is in the immutable registry already: a no-op when it holds this image, or an image
    built from the same inputs (a re-run release: builds are not byte-reproducible); else refused."""
    if existing == _local_digest(docker, image_ref, remote):
        on_line(f"{remote}:{tag} is already in the registry with this content ({existing})")
        return existing
    ours = (docker.images.get(image_ref).labels or {}).get(BUILD_INPUTS_LABEL)
    theirs = RegistryClient(login).labels(remote.split("/", 1)[1], tag).get(BUILD_INPUTS_LABEL)
    if ours and ours != "unknown" and ours == theirs:
        on_line(f"{remote}:{tag} is already in the registry ({existing}), built from the same inputs ({ours}): using it")
        return existing
    raise BadInputError(f"{remote}:{tag} already exists with other content ({existing}, built from inputs {theirs or 'unknown'}; "
                        f"this image's are {ours or 'unknown'}) and tags are immutable: build a new version instead.")


TRANSIENT = ("timeout", "connection reset", "connection refused", "503", "502", "504", "TLS handshake", "EOF")


def push_image(ctx: Context, image_ref: str, on_line: Progress = silent, attempts: int = 4,
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
        return _reuse_existing(docker, login, image_ref, remote, tag, existing, on_line)
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
