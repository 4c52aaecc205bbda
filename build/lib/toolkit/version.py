"""The code version recorded in artifacts: package version plus git commit when known."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@lru_cache(maxsize=1)
def code_version() -> str:
    try:
        package = version("toolkit")
    except PackageNotFoundError:
        package = "0+unknown"
    commit = git_short_sha(Path(__file__).resolve().parent.parent)
    return f"{package}+g{commit}" if commit else package


def git_short_sha(repo: Path) -> str | None:
    """Short commit of `repo`, with '.dirty' when the work tree has changes; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}.dirty" if dirty else sha
