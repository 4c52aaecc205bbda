"""The way out of CDKTF: every stack as plain Terraform HCL that validates and plans like the JSON.

CDKTF was archived in December 2025; HashiCorp's advice is `cdktf synth --hcl` and plain
Terraform from then on. Its converter has two known faults we correct for: it mangles JSON
strings with references in them (the constructs build such documents with `Fn.jsonencode` or a
policy document data source instead, so there are none), and it writes the references in
`depends_on` and `lifecycle.ignore_changes` in the quoted form Terraform 0.11 used (deprecated:
a warning today, an error later), which `unquote_references` rewrites; and it writes a multi-line
string as a heredoc, whose value gains a newline at the end (so a plan would change every such
attribute), which `exact_heredocs` takes off again. The result is formatted with `terraform fmt`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from toolkit.paths import ProjectPaths, stack_name
from toolkit.terraform.adapter import TerraformError, terraform_environment

HCL_FILE = "cdk.tf"
# Arguments whose list items are references (resources, or attribute paths), never strings.
# The list runs to a `]` that closes a line (an item's own brackets, as in a[0].b, never do).
_REFERENCE_LISTS = re.compile(r"((?:depends_on|ignore_changes|replace_triggered_by)\s*=\s*\[)(.*?)(\]\s*$)", re.S | re.M)
_QUOTED_REFERENCE = re.compile(r'"([A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*)"')


def unquote_references(text: str) -> str:
    """depends_on = ["aws_x.y"] → [aws_x.y]; ignore_changes = ["a[0].b"] → [a[0].b] (only in those lists)."""
    return _REFERENCE_LISTS.sub(lambda m: m.group(1) + _QUOTED_REFERENCE.sub(r"\1", m.group(2)) + m.group(3), text)


_HEREDOC = re.compile(r"=\s*<<(-?)([A-Z]+)\n(.*?)\n\2$", re.S | re.M)


def exact_heredocs(text: str) -> str:
    """`= <<EOF … EOF` → `= trimsuffix(<<EOF … EOF, "\\n")`: the heredoc adds the newline before its
    terminator to the value, which the JSON stack's string does not have."""
    return _HEREDOC.sub(lambda m: f'= trimsuffix(<<{m.group(1)}{m.group(2)}\n{m.group(3)}\n{m.group(2)}\n, "\\n")', text)


def export_hcl(paths: ProjectPaths, outdir: Path, envs: list[str] | None = None) -> dict[str, Path]:
    """Synthesize the stacks of `envs` (default: all) as HCL into `outdir`/stacks/<stack>/cdk.tf."""
    app = " ".join([sys.executable, "-m", "infra", *(f"--env={env}" for env in envs or [])])  # this venv's Python
    command = ["npx", "--no-install", "cdktf", "synth", "--hcl", "--output", str(outdir), "--app", app]
    environment = {**os.environ, **terraform_environment(paths), "TOOLKIT_ROOT": str(paths.root)}
    result = subprocess.run(command, cwd=paths.root, env=environment, capture_output=True, text=True)
    if result.returncode != 0:
        raise TerraformError(f"cdktf synth --hcl failed (exit {result.returncode}):\n{(result.stderr or result.stdout)[-3000:]}")
    stacks = {}
    for directory in sorted((outdir / "stacks").iterdir()):
        hcl = directory / HCL_FILE
        if not hcl.exists() or (envs and directory.name not in {stack_name(env) for env in envs}):
            continue
        hcl.write_text(exact_heredocs(unquote_references(hcl.read_text())))
        stacks[directory.name] = directory
    if shutil.which("terraform"):
        subprocess.run(["terraform", "fmt", "-list=false", *map(str, stacks.values())], capture_output=True,
                       env={**os.environ, **terraform_environment(paths)})
    return stacks
