"""A Docker engine for the local environment: an existing one, else dockerd started as
docs/local-environment.md describes (root, state under .local/docker, no iptables or bridge: containers use the host network)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.images.docker import docker_answers, docker_base_url
from toolkit.local.process import Service, read_pid, spawn_and_wait, stop_pid
from toolkit.paths import ProjectPaths

NAME = "dockerd"


def docker_status(paths: ProjectPaths) -> Service:
    url = docker_base_url(paths)
    return Service("docker engine", url, read_pid(paths.pidfile(NAME)), docker_answers(url),
                   paths.state_subdir("docker") / "dockerd.log")


def start_dockerd(paths: ProjectPaths, timeout: float = 60.0) -> Service:
    """Use a Docker engine that answers; else start our own."""
    status = docker_status(paths)
    if status.running:
        return status
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise ToolkitError("no Docker engine answers and dockerd is not installed; `make setup` installs docker.io.")
    if os.geteuid() != 0:
        raise ToolkitError("no Docker engine answers, and starting dockerd needs root; start Docker or set DOCKER_HOST.")
    base = paths.state_subdir("docker")
    socket = f"unix://{paths.docker_socket}"
    spawn_and_wait(
        "dockerd", [dockerd, "--host", socket, "--data-root", str(base / "data"), "--exec-root", str(base / "exec"),
                    "--pidfile", str(base / "dockerd.own.pid"), "--iptables=false", "--bridge=none"],
        pidfile=paths.pidfile(NAME), log=status.log, ready=lambda: docker_answers(socket), timeout=timeout, poll=0.3,
    )
    return docker_status(paths)


def stop_dockerd(paths: ProjectPaths) -> bool:
    stopped = stop_pid(paths.pidfile(NAME), timeout=30)
    if stopped:
        _unmount_leftovers(paths.state / "docker" / "exec")
    return stopped


def _unmount_leftovers(exec_root: Path) -> None:
    """dockerd leaves its network-namespace bind mount behind; it would make the state dir undeletable."""
    for line in Path("/proc/mounts").read_text().splitlines():
        mount_point = line.split()[1]
        if mount_point.startswith(str(exec_root)):
            subprocess.run(["umount", mount_point], check=False, capture_output=True)
