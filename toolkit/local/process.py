"""Background services of the local environment: start one, wait until it answers, stop it by pidfile.

Every service runs in its own session (so stopping it stops its children), writes its output to
a log under `.local/`, and is found again by its pidfile."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from toolkit.errors import ToolkitError


def read_pid(pidfile: Path) -> int | None:
    """The pid in `pidfile` if that process is alive."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return None if _zombie(pid) else pid


def http_answers(url: str, timeout: float = 1.0) -> bool:
    """Something answers HTTP at `url` (any status counts)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """`url` answers with a 2xx (a readiness endpoint says ready)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


def spawn_and_wait(name: str, argv: list[str], *, pidfile: Path, log: Path, ready: Callable[[], bool],
                   timeout: float, env: dict[str, str] | None = None, poll: float = 0.2) -> int:
    """Start `argv` in the background and wait until `ready()`; returns its pid.

    The process is stopped again, with a ToolkitError naming its log, when it exits or is not
    ready within `timeout` seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    pidfile.write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pidfile.unlink(missing_ok=True)
            raise ToolkitError(f"{name} exited with code {process.returncode}; see {log}.")
        if ready():
            return process.pid
        time.sleep(poll)
    stop_pid(pidfile)
    raise ToolkitError(f"{name} did not answer within {timeout:.0f} s; see {log}.")


def stop_pid(pidfile: Path, timeout: float = 10.0) -> bool:
    """Stop the process group in `pidfile`; True if something was running."""
    pid = read_pid(pidfile)
    pidfile.unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _exited(pid):
            return True
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    _exited(pid)
    return True


def _exited(pid: int) -> bool:
    """`pid` is gone. A child of this process that has exited stays a zombie (and `kill(pid, 0)` still
    succeeds) until it is reaped, so our own children are reaped here; others are reaped by init."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        return reaped == pid
    except ChildProcessError:  # not our child
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def require_loopback(host: str | None, what: str) -> None:
    if host not in ("127.0.0.1", "localhost"):
        raise ToolkitError(f"{what} is not on 127.0.0.1; the local environment only starts services there.")


@dataclass
class Service:
    """What `toolkit local status` shows of one service."""

    name: str
    url: str
    pid: int | None
    running: bool
    log: Path
