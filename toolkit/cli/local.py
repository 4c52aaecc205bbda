"""`toolkit local up | down | status`: the local environment's services."""

from __future__ import annotations

import click

from toolkit.cli.options import JSON_OPTION, echo_err, emit_json, load_context
from toolkit.errors import ToolkitError


@click.group("local")
def local_group() -> None:
    """Start, stop and inspect the local environment's services (127.0.0.1 only)."""


@local_group.command("up")
@click.option("--aws-only", is_flag=True, help="Start only the moto server (no Docker engine or registry).")
@JSON_OPTION
def local_up(aws_only: bool, as_json: bool) -> None:
    """Start what the local environment needs, reusing what already runs: the moto server (AWS),
    a Docker engine (an existing one, else dockerd), the OCI registry standing in for ECR (its
    htpasswd login is the one ECR hands out), and the offline base image (built once)."""
    from toolkit.local.services import start_local_services

    _print_services(start_local_services(load_context("local"), aws_only=aws_only, on_line=echo_err), as_json)


@local_group.command("down")
def local_down() -> None:
    """Stop the local services this toolkit started (by pidfile). Moto's state is in memory and goes with it."""
    from toolkit.local.services import stop_local_services
    from toolkit.paths import ProjectPaths

    for name, stopped in stop_local_services(ProjectPaths.discover()).items():
        click.echo(f"{name} {'stopped' if stopped else 'was not running'}")


@local_group.command("status")
@JSON_OPTION
def local_status(as_json: bool) -> None:
    """Show the local services, their URLs, pids and logs; exit 1 if any is down."""
    from toolkit.local.services import local_services_status

    services = local_services_status(load_context("local"))
    _print_services(services, as_json)
    down = [s.name for s in services if not s.running]
    if down:
        raise ToolkitError(f"not running: {', '.join(down)}; start them with `toolkit local up`.")


def _print_services(services, as_json: bool) -> None:
    rows = [{"name": s.name, "url": s.url, "pid": s.pid, "running": s.running, "log": str(s.log)} for s in services]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{'up  ' if r['running'] else 'down'}  {r['name']:<18} {r['url']:<26} pid {r['pid'] or '-':<8} log {r['log']}")


COMMANDS = [local_group]
