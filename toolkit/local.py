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
