"""Options and output helpers every command group shares, each defined once."""

from __future__ import annotations

import functools
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


def pass_context(fn):
    """--env ENV, handed to the command as `ctx`: ENV's validated config and this checkout's paths."""

    @ENV_OPTION
    @functools.wraps(fn)
    def command(env: str, **kwargs):
        return fn(load_context(env), **kwargs)

    return command


def pass_runtime(qualifier: str = ""):
    """--env ENV with --kubeconfig/--context, handed to the command as `runtime`: where ENV's
    workloads run, chosen once (toolkit.delivery.runtime); `runtime.ctx` is the environment."""

    def decorate(fn):
        @ENV_OPTION
        @cluster_options(qualifier)
        @functools.wraps(fn)
        def command(env: str, kubeconfig: str | None, context: str | None, **kwargs):
            from toolkit.delivery.runtime import open_runtime

            return fn(open_runtime(load_context(env), kubeconfig, context), **kwargs)

        return command

    return decorate


def signed_model(fn):
    """--model DIR, verified against the keys --public-key or --env choose (else those the serving
    container is given, $TOOLKIT_MODEL_PUBLIC_KEYS), handed to the command as `model`: checksums,
    then signature (toolkit.ml.signing.load_signed_artifact); never keys the artifact names itself."""

    @MODEL_OPTION
    @click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
                  help="Verify the model's signature against this public key only.")
    @click.option("--env", "trust_env", metavar="ENV",
                  help="Verify the model's signature against the keys ENV trusts (its own and those it promotes from).")
    @functools.wraps(fn)
    def command(model_dir: Path, public_key: Path | None, trust_env: str | None, **kwargs):
        from toolkit.ml.signing import load_signed_artifact
        from toolkit.signing_keys import chosen_keys

        return fn(model=load_signed_artifact(model_dir, chosen_keys(public_key, trust_env)), **kwargs)

    return command


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
