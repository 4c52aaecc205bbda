"""The local environment's services, together: moto (AWS), a Docker engine, the registry (ECR).

Every service binds 127.0.0.1, keeps its state under `.local/` in the repository, and writes a
pidfile so `toolkit local down` (and test teardown) stop exactly what was started. Moto keeps
AWS state in memory: when it restarts, the local Terraform state goes with it.
"""

from __future__ import annotations

from toolkit.context import Context
from toolkit.errors import BadInputError
from toolkit.feedback_tokens import ensure_local_credentials
from toolkit.images.base_image import BASE_IMAGE, ensure_base_image
from toolkit.images.docker import docker_client
from toolkit.images.login import registry_login
from toolkit.lines import Lines, silent
from toolkit.local.dockerd import docker_status, start_dockerd, stop_dockerd
from toolkit.local.monitoring import monitoring_status, start_monitoring, stop_monitoring
from toolkit.local.moto import moto_status, start_moto, stop_moto
from toolkit.local.process import Service
from toolkit.local.registry import registry_status, start_registry, stop_registry
from toolkit.paths import ProjectPaths


def require_emulated(ctx: Context) -> str:
    """The environment's AWS endpoint, which the local services need."""
    if not ctx.config.aws.endpoint_url:
        raise BadInputError(f"environments/{ctx.env}.yaml has no aws.endpoint_url; the local environment needs one.")
    return ctx.config.aws.endpoint_url


def start_local_services(ctx: Context, aws_only: bool = False, on_line: Lines = silent) -> list[Service]:
    """moto, then (unless aws_only) the Docker engine, the registry with ECR's login, the base image,
    the feedback credentials, and the monitoring: Prometheus, Alertmanager and the alert receiver."""
    services = [start_moto(ctx.paths, require_emulated(ctx))]
    if aws_only:
        return services
    services.append(start_dockerd(ctx.paths))
    if ctx.config.registry.endpoint:
        login = registry_login(ctx.config)
        services.append(start_registry(ctx.paths, ctx.config.registry.endpoint, login.username, login.password))
    if ctx.config.serving.base_image == BASE_IMAGE:
        ensure_base_image(docker_client(ctx.paths), ctx.paths, BASE_IMAGE, on_line)
    ensure_local_credentials(ctx)  # the feedback loop's id key and the `local` labeller's token, under .local/feedback/
    return services + start_monitoring(ctx)


def ensure_emulated_services(ctx: Context, on_line: Lines = silent) -> None:
    """An environment on an AWS emulator (aws.endpoint_url) gets its local services started; others nothing."""
    if ctx.emulated:
        start_local_services(ctx, on_line=on_line)


def local_services_status(ctx: Context) -> list[Service]:
    services = [moto_status(ctx.paths, require_emulated(ctx)), docker_status(ctx.paths)]
    if ctx.config.registry.endpoint:
        services.append(registry_status(ctx.paths, ctx.config.registry.endpoint))
    return services + monitoring_status(ctx)


def stop_local_services(paths: ProjectPaths) -> dict[str, bool]:
    return {**stop_monitoring(paths), "registry": stop_registry(paths), "dockerd": stop_dockerd(paths), "moto": stop_moto(paths)}
