"""Synthesis of a stack by `python -m infra` in a subprocess: the toolkit process never imports cdktf."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from toolkit.context import Context
from toolkit.paths import stack_name
from toolkit.terraform.adapter import TerraformError, terraform_environment


def synthesize(ctx: Context, outdir: Path) -> Path:
    """Synthesize the environment's stack into `outdir`; returns its stack directory."""
    result = subprocess.run([sys.executable, "-m", "infra", "--env", ctx.env, "--outdir", str(outdir)], cwd=ctx.root,
                            env={**os.environ, **terraform_environment(ctx.paths)}, capture_output=True, text=True)
    if result.returncode != 0:
        raise TerraformError(f"synthesizing {stack_name(ctx.env)} failed (exit {result.returncode}):\n"
                             f"{(result.stderr or result.stdout)[-3000:]}")
    return outdir / "stacks" / stack_name(ctx.env)
