"""Synthesis of a stack by `python -m infra` in a subprocess: the toolkit process never imports cdktf.

Synthesis takes 13 s or more (jsii starts a node process and loads the provider bindings), so
`synthesize_if_changed` skips it when nothing it reads has changed since the last time: the stack
directory keeps a digest of its inputs (infra/, modules/, every environment file, cdktf.json, the
pins, and the toolkit files the last synthesis recorded it read: the modules it loaded and the
toolkit's data files, else all of toolkit/). So editing the CLI or the serving code keeps a warm
plan warm; editing the config model does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from toolkit.context import Context
from toolkit.paths import SYNTH_SOURCES, stack_name
from toolkit.terraform.adapter import TerraformError, terraform_environment


def synthesize(ctx: Context, outdir: Path) -> Path:
    """Synthesize the environment's stack into `outdir`; returns its stack directory."""
    result = subprocess.run([sys.executable, "-m", "infra", "--env", ctx.env, "--outdir", str(outdir)], cwd=ctx.root,
                            env={**os.environ, **terraform_environment(ctx.paths)}, capture_output=True, text=True)
    if result.returncode != 0:
        raise TerraformError(f"synthesizing {stack_name(ctx.env)} failed (exit {result.returncode}):\n"
                             f"{(result.stderr or result.stdout)[-3000:]}")
    return outdir / "stacks" / stack_name(ctx.env)


INPUT_DIRS, INPUT_SUFFIXES = ("infra", "modules", "toolkit"), {".py", ".json", ".yaml", ".yml"}
INPUT_FILES = ("cdktf.json", "constraints.txt", "package-lock.json", "pyproject.toml")
STAMP = ".toolkit-synth-inputs"


def synthesis_inputs(root: Path, toolkit_sources: list[Path] | None = None) -> str:
    """A digest of everything synthesis reads (paths and bytes), and the Python that runs it.
    `toolkit_sources`: the toolkit files a synthesis recorded it read (None: all of toolkit/)."""
    digest = hashlib.sha256(sys.version.encode())
    bases = INPUT_DIRS if toolkit_sources is None else tuple(base for base in INPUT_DIRS if base != "toolkit")
    files = [path for base in bases for path in (root / base).rglob("*")
             if path.suffix in INPUT_SUFFIXES and "__pycache__" not in path.parts and path.is_file()]
    files += sorted((root / "environments").glob("*.yaml")) + [root / name for name in INPUT_FILES if (root / name).is_file()]
    for path in sorted(files):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    for path in sorted(toolkit_sources or []):  # absolute: the toolkit may be installed outside the checkout
        digest.update(str(path).encode() + b"\0" + (path.read_bytes() if path.is_file() else b"(missing)") + b"\0")
    return digest.hexdigest()


def recorded_sources(stack: Path) -> list[Path] | None:
    """The toolkit files the last synthesis of `stack` read (infra/__main__.py), None when unknown."""
    try:
        return [Path(path) for path in json.loads((stack / SYNTH_SOURCES).read_text())]
    except (OSError, ValueError, TypeError):
        return None


def synthesize_if_changed(ctx: Context, outdir: Path) -> tuple[Path, bool]:
    """(stack directory, whether it was synthesized now): reused when its inputs are unchanged."""
    stack = outdir / "stacks" / stack_name(ctx.env)
    stamp = stack / STAMP
    if (stack / "cdk.tf.json").is_file() and stamp.is_file() and stamp.read_text() == synthesis_inputs(ctx.root, recorded_sources(stack)):
        return stack, False
    stack = synthesize(ctx, outdir)
    stamp.write_text(synthesis_inputs(ctx.root, recorded_sources(stack)))
    return stack, True
