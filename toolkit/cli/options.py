"""Options and output helpers every command group shares, each defined once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # the config (pydantic, PyYAML) loads only when a command runs: `--help` stays instant
    from toolkit.context import Context

ENV_OPTION = click.option("--env", "env", required=True, metavar="ENV",
                          help="Environment: a file in environments/ (local, dev, staging, prod).")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
MODEL_OPTION = click.option("--model", "model_dir", required=True, type=click.Path(path_type=Path),
                            help="Model artifact directory, e.g. artifacts/local/latest.")


def cluster_options(qualifier: str = ""):
    """--kubeconfig/--context: any cluster instead of the environment's EKS (or local Docker runtime).
    `qualifier` says when they apply (e.g. "With --remote: ")."""

    def decorate(fn):
        fn = click.option("--context", metavar="NAME",
                          help=_sentence(qualifier, "kubeconfig context (implies a kubeconfig cluster)."))(fn)
        return click.option("--kubeconfig", type=click.Path(dir_okay=False), metavar="FILE",
                            help=_sentence(qualifier, "Use this kubeconfig instead of EKS from the stack outputs."))(fn)

    return decorate


def timeout_option(help: str):
    return click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS", help=help)


def _sentence(qualifier: str, text: str) -> str:
    return f"{qualifier}{text[0].lower()}{text[1:]}" if qualifier else text


def load_context(env: str) -> Context:
    """ENV's validated config and this checkout's paths (a bad file is a ConfigError: exit 2)."""
    from toolkit.context import Context

    return Context.load(env)


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def echo_err(line: str) -> None:
    click.echo(line, err=True)


def quiet(_line: str) -> None:
    """An on_line callback that drops the line (--json output must stay parseable)."""
