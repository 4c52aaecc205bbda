"""Shared fixtures. Tests run in one process; each gets its own artifact directory."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.terraform import terraform_environment

REPO = Path(__file__).resolve().parent.parent
HEART = REPO / "data" / "heart-cleveland.csv"

# jsii cache in the repo, offline provider mirror, no checkpoint calls: as the Makefile does.
os.environ.update(terraform_environment(REPO))


def free_port() -> int:
    """A free TCP port on 127.0.0.1, for a service of a test's own."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def repo_copy(tmp_path, monkeypatch) -> Path:
    """A scratch project root with the real environments/ and data/, safe to edit."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "environments", root / "environments")
    shutil.copytree(REPO / "data", root / "data")
    monkeypatch.setenv("TOOLKIT_ROOT", str(root))
    return root


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return run


@pytest.fixture(scope="session")
def synthesized():
    """Every shipped environment's stack, synthesized once per session: {env: synth JSON}."""
    from infra_helpers import synth_stack

    from toolkit.config import load_all_environments

    return {env: synth_stack(config) for env, config in load_all_environments().items()}
