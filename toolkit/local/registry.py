"""The OCI registry (CNCF distribution) that stands in for ECR, with htpasswd auth for ECR's login."""

from __future__ import annotations

import shutil

from toolkit.errors import ToolkitError
from toolkit.local.process import Service, http_answers, read_pid, require_loopback, spawn_and_wait, stop_pid
from toolkit.paths import ProjectPaths

NAME = "registry"


def registry_status(paths: ProjectPaths, endpoint: str) -> Service:
    return Service("registry (ECR)", f"http://{endpoint}", read_pid(paths.pidfile(NAME)),
                   http_answers(f"http://{endpoint}/v2/"), paths.state_subdir("registry") / "registry.log")


def start_registry(paths: ProjectPaths, endpoint: str, username: str, password: str, timeout: float = 20.0) -> Service:
    """CNCF distribution on 127.0.0.1 with htpasswd auth for `username` (ECR's user is AWS)."""
    import bcrypt

    status = registry_status(paths, endpoint)
    if status.running:
        return status
    require_loopback(endpoint.split(":")[0], f"registry.endpoint {endpoint}")
    binary = shutil.which("docker-registry")
    if binary is None:
        raise ToolkitError("docker-registry is not installed; `make setup` installs the Debian package.")
    base = paths.state_subdir("registry")
    htpasswd = base / "htpasswd"
    htpasswd.write_text(f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()}\n")
    htpasswd.chmod(0o600)
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage:\n  filesystem: {{rootdirectory: {base / 'data'}}}\n  delete: {{enabled: true}}\n"
        f"http:\n  addr: {endpoint}\n"
        f"auth:\n  htpasswd: {{realm: toolkit-local, path: {htpasswd}}}\n"
    )
    spawn_and_wait("docker-registry", [binary, "serve", str(config)], pidfile=paths.pidfile(NAME), log=status.log,
                   ready=lambda: http_answers(f"http://{endpoint}/v2/"), timeout=timeout)
    return registry_status(paths, endpoint)


def stop_registry(paths: ProjectPaths) -> bool:
    return stop_pid(paths.pidfile(NAME))
