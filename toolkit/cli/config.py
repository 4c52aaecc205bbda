"""`toolkit config list | validate | show`."""

from __future__ import annotations

import click

from toolkit.cli.options import ENV_OPTION, JSON_OPTION, emit_json


@click.group("config")
def config_group() -> None:
    """Inspect and validate environment files."""


@config_group.command("list")
@JSON_OPTION
def config_list(as_json: bool) -> None:
    """List the known environments."""
    from toolkit.config import known_environments

    envs = known_environments()
    emit_json(envs) if as_json else click.echo("\n".join(envs))


@config_group.command("validate")
@click.argument("envs", nargs=-1, metavar="[ENV]...")
def config_validate(envs: tuple[str, ...]) -> None:
    """Validate environment files (all of them by default); exit 2 on the first bad one."""
    from toolkit.config import environment_path, known_environments, load_environment

    for env in envs or known_environments():
        load_environment(env)
        click.echo(f"ok  {environment_path(env)}")


@config_group.command("show")
@ENV_OPTION
@JSON_OPTION
def config_show(env: str, as_json: bool) -> None:
    """Print an environment's validated configuration, defaults filled in."""
    import yaml

    from toolkit.config import load_environment

    data = load_environment(env).model_dump(mode="json")
    emit_json(data) if as_json else click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


COMMANDS = [config_group]
