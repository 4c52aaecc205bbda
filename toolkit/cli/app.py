"""The `toolkit` click app: one group; each command group lives in its own module and is a thin
layer over a library call. Nothing imports this package.

Exit codes: 0 ok, 1 failure, 2 bad input (config, data, arguments, corrupt artifact), 3 a plan
that destroys protected resources. Every one of them comes from a ToolkitError through the
handler below. Heavy imports happen inside commands so `toolkit --help` is instant.
"""

from __future__ import annotations

import os
import sys

import click

from toolkit.cli import config, images, infra, local, loop, ml, monitoring, serve, sweep, workloads
from toolkit.errors import ToolkitError


class ToolkitGroup(click.Group):
    """Turns a ToolkitError into one clear paragraph on stderr and its exit code; a reader that
    closed our stdout (`toolkit predict … | head -1`) ends the command quietly, with exit code 0."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except BrokenPipeError:
            # Python would print the error again when it flushes stdout at exit: point stdout at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)


@click.group(cls=ToolkitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="toolkit")
def cli() -> None:
    """ML platform toolkit: train models with the numpy core, build and push their serving
    image, and deploy it to the Terraform-provisioned platform of each environment.

    \b
    Release flow:  toolkit train → build → push → deploy (→ status, rollback)
    Local:         `make demo` does it all on the local environment (moto, Docker, registry).

    Every command reads its settings from environments/<ENV>.yaml.
    """


for _module in (config, ml, sweep, serve, local, images, infra, workloads, monitoring, loop):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="toolkit")
