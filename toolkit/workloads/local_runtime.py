"""The local environment's runtime: the released image on the local Docker engine, run with the
same environment, port and health checks as the Kubernetes Deployment.

A new release first runs as a candidate on a spare port; only when its /readyz answers (and the
image's HEALTHCHECK agrees) does it replace the serving container. A candidate that fails is
removed and the old container never stops. The swap itself (stop old, start new on the service
port) takes about a second of downtime: both cannot bind the same port, and there is no proxy.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from typing import Callable

from toolkit.aws import emulator_environment
from toolkit.config import EnvironmentConfig
from toolkit.context import Context
from toolkit.errors import RolloutError
from toolkit.feedback_tokens import ensure_local_credentials
from toolkit.images.build import MODEL_VERSION_LABEL
from toolkit.images.docker import docker_client
from toolkit.images.login import RegistryLogin
from toolkit.images.release import Release, ReleaseRecords, rollback_target, with_release, without_release
from toolkit.lines import silent
from toolkit.serving import ServingSettings
from toolkit.signing_keys import bundle, trusted_keys
from toolkit.workloads.manifests import IMAGE_ANNOTATION, MODEL_VERSION_ANNOTATION, RUN_AS_USER

Progress = Callable[[str], None]


def container_name(env: str) -> str:
    return f"toolkit-serving-{env}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_url(config: EnvironmentConfig) -> str:
    return f"http://127.0.0.1:{config.serving.port}"


def _ready(port: int, model_version: str | None = None) -> bool:
    """/readyz answers 200 (and, when given, for this model version: another server on the port does not count)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            if response.status != 200:
                return False
            return model_version is None or json.loads(response.read()).get("model_version") == model_version
    except (OSError, ValueError):
        return False


def _logs_tail(container, lines: int = 15) -> str:
    import docker as docker_sdk

    try:
        return container.logs(tail=lines).decode(errors="replace").strip()
    except docker_sdk.errors.APIError:  # the container may be gone already
        return ""


def _run(docker, config: EnvironmentConfig, release: Release, name: str, port: int, settings: ServingSettings, serving: bool = False):
    """Start the image like the Deployment's pod: non-root, read-only root fs, no capabilities,
    a tmpfs /tmp, the ConfigMap's environment; host network on 127.0.0.1 (docs/local-environment.md).
    The serving container comes back with the engine (`toolkit local down` / `up`)."""
    environment = {**settings.replace(port=port).to_environ(), **emulator_environment(config)}
    return docker.containers.run(
        release.image, name=name, detach=True, network_mode="host", environment=environment,
        user=f"{RUN_AS_USER}:{RUN_AS_USER}", read_only=True, tmpfs={"/tmp": "size=64m"}, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], restart_policy={"Name": "unless-stopped"} if serving else None,
        mem_limit=_bytes(config.serving.resources.limits.memory),
        labels={"io.toolkit.environment": config.name, IMAGE_ANNOTATION: release.image,
                MODEL_VERSION_ANNOTATION: release.model_version, "io.toolkit.port": str(port)},
    )


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(float(quantity))


def wait_ready(container, port: int, timeout: float) -> None:
    """Until the container's own server answers /readyz (the model version its image is labelled
    with); RolloutError with the container's last log lines if it exits or times out."""
    expected = container.image.labels.get(MODEL_VERSION_LABEL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs["State"].get("ExitCode")
            raise RolloutError(f"container {container.name} exited with code {code}:\n{_logs_tail(container)}", "CrashLoopBackOff")
        if _ready(port, expected):
            return
        time.sleep(0.2)
    raise RolloutError(f"container {container.name} not ready on port {port} after {timeout:.0f} s (readiness probe "
                       f"failed):\n{_logs_tail(container)}", "ReadinessProbeFailed")


def _remove(docker, name: str) -> None:
    import docker as docker_sdk

    try:
        docker.containers.get(name).remove(force=True)
    except docker_sdk.errors.NotFound:
        pass


def _pull(docker, release: Release, login: RegistryLogin | None) -> None:
    import docker as docker_sdk

    try:
        docker.images.get(release.image)
        return
    except docker_sdk.errors.ImageNotFound:
        pass
    repository, _, digest = release.image.partition("@")
    try:
        docker.api.pull(repository, tag=digest, auth_config=login.auth_config() if login else None)
    except docker_sdk.errors.APIError as exc:
        raise RolloutError(f"cannot pull {release.image}: {exc.explanation or exc}", "ErrImagePull") from None


def deploy_local(ctx: Context, release: Release, login: RegistryLogin | None = None, timeout: float | None = None,
                 on_line: Progress = silent) -> dict:
    """Replace the serving container with `release` once a candidate of it is ready."""
    config = ctx.config
    timeout = timeout or config.workloads.rollout_timeout_seconds
    docker = docker_client(ctx.paths)
    start = time.monotonic()
    _pull(docker, release, login)
    name = container_name(config.name)
    candidate_name, port = f"{name}-candidate", _free_port()
    _remove(docker, candidate_name)
    on_line(f"candidate {release.image} on 127.0.0.1:{port}")
    settings = serving_settings(ctx)
    candidate = _run(docker, config, release, candidate_name, port, settings)
    try:
        wait_ready(candidate, port, timeout)
    except RolloutError as failure:
        _remove(docker, candidate_name)
        serving = current_release(ctx)
        kept = f"\n{serving.image} keeps serving on {service_url(config)}" if serving else ""
        raise RolloutError(f"{failure}{kept}", failure.reason) from None
    candidate.remove(force=True)
    previous = _swap(docker, config, release, name, timeout, on_line, settings)
    records = ReleaseRecords(ctx.paths, ctx.env)
    records.save_history(with_release(records.history(), release))
    return {"release": release.image, "model_version": release.model_version, "url": service_url(config),
            "replaced": previous, "seconds": round(time.monotonic() - start, 1)}


def serving_settings(ctx: Context) -> ServingSettings:
    """The container's settings: the environment's, on loopback, with the keys it trusts and its feedback
    credentials (feedback_tokens.py: made under .local/ on first use)."""
    return ServingSettings.from_config(ctx.config, bundle(trusted_keys(ctx)), host="127.0.0.1",
                                       feedback_secret=ensure_local_credentials(ctx).dumps())


def _swap(docker, config: EnvironmentConfig, release: Release, name: str, timeout: float, on_line: Progress,
          settings: ServingSettings) -> str | None:
    """Stop the old container, start the new one on the service port; on failure restart the old."""
    import docker as docker_sdk

    try:
        old = docker.containers.get(name)
    except docker_sdk.errors.NotFound:
        old = None
    previous = old.labels.get(IMAGE_ANNOTATION) if old else None
    if old is not None:
        old.stop(timeout=10)
        old.rename(f"{name}-previous-{int(time.time())}")
    on_line(f"serving {release.image} on {service_url(config)}")
    new = _run(docker, config, release, name, config.serving.port, settings, serving=True)
    try:
        wait_ready(new, config.serving.port, timeout)
    except RolloutError:
        new.remove(force=True)
        if old is not None:
            old.rename(name)
            old.start()
        raise
    if old is not None:
        old.remove(force=True)
    return previous


def current_release(ctx: Context) -> Release | None:
    import docker as docker_sdk

    try:
        container = docker_client(ctx.paths).containers.get(container_name(ctx.env))
    except docker_sdk.errors.NotFound:
        return None
    return Release(container.labels[IMAGE_ANNOTATION], container.labels.get(MODEL_VERSION_ANNOTATION, "unknown"))


def rollback_local(ctx: Context, login: RegistryLogin | None = None, timeout: float | None = None,
                   on_line: Progress = silent, verify: Callable[[Release], object] = lambda release: None) -> dict:
    """Re-deploy the release before the live one, once `verify` accepted it (the history is a file)."""
    records = ReleaseRecords(ctx.paths, ctx.env)
    current = current_release(ctx)
    target = rollback_target(records.history(), current, ctx.env)
    verify(target)
    result = deploy_local(ctx, target, login, timeout, on_line)
    if current is not None:  # the rolled-back release leaves the history
        records.save_history(without_release(records.history(), current))
    return result


def status_local(ctx: Context) -> dict:
    import docker as docker_sdk

    config = ctx.config
    try:
        container = docker_client(ctx.paths).containers.get(container_name(ctx.env))
    except docker_sdk.errors.NotFound:
        return {"deployed": False, "runtime": "docker"}
    state = container.attrs["State"]
    return {"deployed": True, "runtime": "docker", "container": container.name, "url": service_url(config),
            "image": container.labels.get(IMAGE_ANNOTATION), "model_version": container.labels.get(MODEL_VERSION_ANNOTATION),
            "state": state.get("Status"), "health": state.get("Health", {}).get("Status"), "started_at": state.get("StartedAt"),
            "ready": _ready(config.serving.port, container.image.labels.get(MODEL_VERSION_LABEL)),
            "history": [r.image for r in ReleaseRecords(ctx.paths, ctx.env).history()]}
