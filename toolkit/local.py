"""Local environment services: the moto server that stands in for AWS.

Every service binds 127.0.0.1, keeps its state under `.local/` in the repository, and
writes a pidfile so `toolkit local down` (and test teardown) stop exactly what was started.
Moto keeps AWS state in memory: when it restarts, the local Terraform state is stale, so
`up` starting a fresh moto also clears the local stack's state bucket contents (it is gone).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from toolkit.errors import ToolkitError


@dataclass
class Service:
    name: str
    url: str
    pid: int | None
    running: bool
    log: Path


def state_dir(root: Path) -> Path:
    path = root / ".local"
    path.mkdir(exist_ok=True)
    return path


def _pidfile(root: Path, name: str) -> Path:
    return state_dir(root) / f"{name}.pid"


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError):
        return False


def moto_status(root: Path, endpoint_url: str) -> Service:
    pid = _read_pid(_pidfile(root, "moto"))
    return Service("moto (AWS APIs)", endpoint_url, pid, _http_ok(f"{endpoint_url}/moto-api/"), state_dir(root) / "moto.log")


def start_moto(root: Path, endpoint_url: str, timeout: float = 30.0) -> Service:
    """Start moto_server on the endpoint's 127.0.0.1 port unless one already answers."""
    status = moto_status(root, endpoint_url)
    if status.running:
        return status
    parsed = urlparse(endpoint_url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise ToolkitError(f"aws.endpoint_url {endpoint_url} is not on 127.0.0.1; the local environment only starts services there.")
    executable = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if executable is None:
        raise ToolkitError("moto_server is not installed; run `make setup` (it installs moto[server]).")
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}  # else AmazonEKSClusterPolicy cannot be attached
    log = status.log
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [executable, "-H", "127.0.0.1", "-p", str(parsed.port or 80)],
            stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    _pidfile(root, "moto").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ToolkitError(f"moto_server exited with code {process.returncode}; see {log}.")
        if _http_ok(f"{endpoint_url}/moto-api/"):
            return moto_status(root, endpoint_url)
        time.sleep(0.2)
    stop_pid(_pidfile(root, "moto"))
    raise ToolkitError(f"moto_server did not answer on {endpoint_url} within {timeout:.0f} s; see {log}.")


def stop_pid(pidfile: Path, timeout: float = 10.0) -> bool:
    """Stop the process group in `pidfile`; True if something was running."""
    pid = _read_pid(pidfile)
    pidfile.unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    return True


def stop_moto(root: Path) -> bool:
    return stop_pid(_pidfile(root, "moto"))


# ---------------------------------------------------------------- Docker engine


def docker_socket(root: Path) -> Path:
    return state_dir(root) / "docker" / "docker.sock"


def docker_base_url(root: Path) -> str:
    """$DOCKER_HOST, else the system socket if it answers, else our own dockerd's socket."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    if _docker_answers("unix:///var/run/docker.sock"):
        return "unix:///var/run/docker.sock"
    return f"unix://{docker_socket(root)}"


def _docker_answers(base_url: str) -> bool:
    import docker

    try:
        docker.DockerClient(base_url=base_url, timeout=3).ping()
        return True
    except Exception:  # not there, refused, permission: all mean "not usable"
        return False


def docker_status(root: Path) -> Service:
    url = docker_base_url(root)
    return Service("docker engine", url, _read_pid(_pidfile(root, "dockerd")), _docker_answers(url),
                   state_dir(root) / "docker" / "dockerd.log")


def start_dockerd(root: Path, timeout: float = 60.0) -> Service:
    """Use a Docker engine that answers; else start dockerd as DESIGN.md describes (root,
    state under .local/docker, no iptables or bridge: containers use the host network)."""
    status = docker_status(root)
    if status.running:
        return status
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise ToolkitError("no Docker engine answers and dockerd is not installed; `make setup` installs docker.io.")
    if os.geteuid() != 0:
        raise ToolkitError("no Docker engine answers, and starting dockerd needs root; start Docker or set DOCKER_HOST.")
    base = state_dir(root) / "docker"
    base.mkdir(exist_ok=True)
    with open(status.log, "ab") as handle:
        process = subprocess.Popen(
            [dockerd, "--host", f"unix://{docker_socket(root)}", "--data-root", str(base / "data"),
             "--exec-root", str(base / "exec"), "--pidfile", str(base / "dockerd.own.pid"),
             "--iptables=false", "--bridge=none"],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
        )
    _pidfile(root, "dockerd").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ToolkitError(f"dockerd exited with code {process.returncode}; see {status.log}.")
        if _docker_answers(f"unix://{docker_socket(root)}"):
            return docker_status(root)
        time.sleep(0.3)
    stop_pid(_pidfile(root, "dockerd"))
    raise ToolkitError(f"dockerd did not answer within {timeout:.0f} s; see {status.log}.")


def stop_dockerd(root: Path) -> bool:
    stopped = stop_pid(_pidfile(root, "dockerd"), timeout=30)
    # dockerd leaves its network-namespace bind mount behind; it would make the state dir undeletable.
    exec_root = state_dir(root) / "docker" / "exec"
    for line in Path("/proc/mounts").read_text().splitlines() if stopped else []:
        mount_point = line.split()[1]
        if mount_point.startswith(str(exec_root)):
            subprocess.run(["umount", mount_point], check=False, capture_output=True)
    return stopped


# ---------------------------------------------------------------- offline base image

BASE_IMAGE = "toolkit-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# Not needed at run time; removing them keeps the base image around 110 MB.
TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info")


def ensure_base_image(client, root: Path, tag: str = BASE_IMAGE, on_line=print) -> str:
    """Build the offline Python 3.11 base image once (debootstrap bookworm minbase + python3),
    reuse it afterwards. Returns the tag."""
    import docker

    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ToolkitError(f"image {tag} is missing and debootstrap is not installed; `make setup` installs it.")
    rootfs = state_dir(root) / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    on_line(f"building {tag} with debootstrap (about a minute, once)")
    result = subprocess.run([debootstrap, "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(rootfs), DEBIAN_MIRROR],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolkitError(f"debootstrap failed (exit {result.returncode}): {result.stdout[-1500:]}{result.stderr[-1500:]}")
    for path in TRIM:
        shutil.rmtree(rootfs / path, ignore_errors=True)
    tarball = state_dir(root) / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tarball), "."], check=True)
    repository, _, version = tag.partition(":")
    client.api.import_image_from_file(str(tarball), repository=repository, tag=version or "latest")
    tarball.unlink()
    shutil.rmtree(rootfs, ignore_errors=True)
    return tag


# ---------------------------------------------------------------- OCI registry (stands in for ECR)


def registry_status(root: Path, endpoint: str) -> Service:
    return Service("registry (ECR)", f"http://{endpoint}", _read_pid(_pidfile(root, "registry")),
                   _http_ok(f"http://{endpoint}/v2/"), state_dir(root) / "registry" / "registry.log")


def start_registry(root: Path, endpoint: str, username: str, password: str, timeout: float = 20.0) -> Service:
    """CNCF distribution on 127.0.0.1 with htpasswd auth for `username` (ECR's user is AWS)."""
    import bcrypt

    status = registry_status(root, endpoint)
    if status.running:
        return status
    host = endpoint.split(":")[0]
    if host not in ("127.0.0.1", "localhost"):
        raise ToolkitError(f"registry.endpoint {endpoint} is not on 127.0.0.1; the local environment only starts services there.")
    binary = shutil.which("docker-registry")
    if binary is None:
        raise ToolkitError("docker-registry is not installed; `make setup` installs the Debian package.")
    base = state_dir(root) / "registry"
    base.mkdir(exist_ok=True)
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
    with open(status.log, "ab") as handle:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    _pidfile(root, "registry").write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ToolkitError(f"docker-registry exited with code {process.returncode}; see {status.log}.")
        if _http_ok(f"http://{endpoint}/v2/"):
            return registry_status(root, endpoint)
        time.sleep(0.2)
    stop_pid(_pidfile(root, "registry"))
    raise ToolkitError(f"docker-registry did not answer on {endpoint} within {timeout:.0f} s; see {status.log}.")


def stop_registry(root: Path) -> bool:
    return stop_pid(_pidfile(root, "registry"))


# ---------------------------------------------------------------- all local services


def start_local_services(root: Path, config, aws_only: bool = False, on_line=print) -> list[Service]:
    """moto, then (unless aws_only) the Docker engine, the registry with ECR's login, the base image."""
    services = [start_moto(root, config.aws.endpoint_url)]
    if aws_only:
        return services
    from toolkit.images import docker_client, registry_login

    services.append(start_dockerd(root))
    if config.registry.endpoint:
        login = registry_login(config)
        services.append(start_registry(root, config.registry.endpoint, login.username, login.password))
    if config.serving.base_image == BASE_IMAGE:
        ensure_base_image(docker_client(root), root, BASE_IMAGE, on_line)
    return services


def local_services_status(root: Path, config) -> list[Service]:
    services = [moto_status(root, config.aws.endpoint_url), docker_status(root)]
    if config.registry.endpoint:
        services.append(registry_status(root, config.registry.endpoint))
    return services


def stop_local_services(root: Path) -> dict[str, bool]:
    return {"registry": stop_registry(root), "dockerd": stop_dockerd(root), "moto": stop_moto(root)}
