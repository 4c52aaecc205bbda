"""Stack outputs of a deployed environment, read with `terraform output` from its synthesized stack.

A checkout that never deployed (a CI job releasing to a stack deployed elsewhere) synthesizes the
stack and initializes its backend first, so the outputs come from the remote state."""

from __future__ import annotations

from toolkit.context import Context
from toolkit.paths import stack_name
from toolkit.terraform.adapter import TerraformError, Workspace
from toolkit.terraform.synth import synthesize


def stack_outputs(ctx: Context) -> dict:
    directory = ctx.paths.stack_dir(ctx.env)
    if not (directory / "cdk.tf.json").exists():
        synthesize(ctx, ctx.paths.synth_dir)
    workspace = Workspace(directory, ctx.paths)
    try:
        values = workspace.outputs()
    except TerraformError as exc:
        if "Backend initialization required" not in str(exc):
            raise
        _init(workspace, ctx.env)  # never initialized here, or the backend settings changed since
        values = workspace.outputs()
    if not values:
        raise TerraformError(f"{stack_name(ctx.env)} has no outputs: it is not deployed yet (run `make deploy ENV={ctx.env}`).")
    return values


def _init(workspace: Workspace, env: str) -> None:
    try:
        workspace.init()
    except TerraformError as exc:
        raise TerraformError(f"reading the {stack_name(env)} outputs needs its remote state: {exc}") from None
