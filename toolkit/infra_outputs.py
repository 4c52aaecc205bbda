"""Stack outputs of a deployed environment, read with `terraform output` from its synthesized stack.

A checkout that never deployed (a CI job releasing to a stack deployed elsewhere) synthesizes the
stack and initializes its backend first, so the outputs come from the remote state."""

from __future__ import annotations

from pathlib import Path

from toolkit.config import load_environment
from toolkit.terraform import TerraformError, Workspace


def stack_dir(env: str, root: Path) -> Path:
    return root / "cdktf.out" / "stacks" / f"platform-{env}"


def stack_outputs(env: str, root: Path) -> dict:
    load_environment(env)  # unknown environment: the clear config error
    directory = stack_dir(env, root)
    if not (directory / "cdk.tf.json").exists():
        from toolkit.plan import synthesize

        synthesize(env, root, root / "cdktf.out")
    workspace = Workspace(directory, root)
    try:
        values = workspace.outputs()
    except TerraformError as exc:
        if "Backend initialization required" not in str(exc):
            raise
        _init(workspace, env)  # never initialized here, or the backend settings changed since
        values = workspace.outputs()
    if not values:
        raise TerraformError(f"platform-{env} has no outputs: it is not deployed yet (run `make deploy ENV={env}`).")
    return values


def _init(workspace: Workspace, env: str) -> None:
    try:
        workspace.init()
    except TerraformError as exc:
        raise TerraformError(f"reading the platform-{env} outputs needs its remote state: {exc}") from None
