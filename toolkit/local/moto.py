"""The moto server that stands in for AWS (state in memory: a restart wipes it)."""

from __future__ import annotations

import importlib.util
import os
import sys
from urllib.parse import urlparse

from toolkit.errors import ToolkitError
from toolkit.local.process import Service, http_answers, read_pid, require_loopback, spawn_and_wait, stop_pid
from toolkit.paths import ProjectPaths

NAME = "moto"


def moto_status(paths: ProjectPaths, endpoint_url: str) -> Service:
    return Service("moto (AWS APIs)", endpoint_url, read_pid(paths.pidfile(NAME)), http_answers(f"{endpoint_url}/moto-api/"),
                   paths.state / "moto.log")


def start_moto(paths: ProjectPaths, endpoint_url: str, timeout: float = 30.0) -> Service:
    """Start moto's server (toolkit.local.moto_server: moto_server that answers an SDK's retry of a
    call it already answered) on the endpoint's 127.0.0.1 port unless one already answers."""
    status = moto_status(paths, endpoint_url)
    if status.running:
        return status
    parsed = urlparse(endpoint_url)
    require_loopback(parsed.hostname, f"aws.endpoint_url {endpoint_url}")
    if not all(importlib.util.find_spec(name) for name in ("moto", "flask")):
        raise ToolkitError("moto's server is not installed; run `make setup` (it installs moto[server]).")
    spawn_and_wait(
        "moto_server", [sys.executable, "-m", "toolkit.local.moto_server", "-H", "127.0.0.1", "-p", str(parsed.port or 80)],
        pidfile=paths.pidfile(NAME),
        log=status.log, ready=lambda: http_answers(f"{endpoint_url}/moto-api/"), timeout=timeout,
        env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},  # else AmazonEKSClusterPolicy cannot be attached
    )
    return moto_status(paths, endpoint_url)


def stop_moto(paths: ProjectPaths) -> bool:
    return stop_pid(paths.pidfile(NAME))
