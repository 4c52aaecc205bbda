"""Stack outputs of a deployed environment, read with `terraform output` from its synthesized stack."""

from __future__ import annotations

from pathlib import Path

from toolkit.config import load_environment
from toolkit.terraform import TerraformError, Workspace


def stack_dir(env: str, root: Path) -> Path:
    return root / "cdktf.out" / "stacks" / f"platform-{env}"


def stack_outputs(env: str, root: Path) -> dict:
    load_environment(env)  # unknown environment: the clear config error
    workspace = Workspace(stack_dir(env, root), root)
    values = workspace.outputs()
    if not values:
        raise TerraformError(f"platform-{env} has no outputs: it is not deployed yet (run `make deploy ENV={env}`).")
    return values
