"""`toolkit state bootstrap | outputs | plan | hcl | tf-env`: the environment's Terraform stack."""

from __future__ import annotations

import json
from pathlib import Path

import click

from toolkit.cli.options import JSON_OPTION, echo_err, emit_json, pass_context


@click.group("state")
def state_group() -> None:
    """Terraform remote state."""


@state_group.command("bootstrap")
@pass_context
def state_bootstrap(ctx) -> None:
    """Create ENV's state bucket (versioned, encrypted, private) if it is missing.

    For an environment with aws.endpoint_url (local), the local services are started first."""
    from toolkit.terraform.state import bootstrap_state_bucket

    if ctx.emulated:
        from toolkit.local.moto import start_moto

        start_moto(ctx.paths, ctx.config.aws.endpoint_url)
    created = bootstrap_state_bucket(ctx.config)
    click.echo(f"state bucket s3://{ctx.config.state.bucket} {'created' if created else 'already exists'}")


@click.command()
@pass_context
@JSON_OPTION
def outputs(ctx, as_json: bool) -> None:
    """Print the outputs of ENV's deployed stack (cluster endpoint, registry URL, bucket, role ARNs)."""
    from toolkit.terraform.outputs import stack_outputs

    values = stack_outputs(ctx)
    if as_json:
        emit_json(values)
        return
    for key, value in values.items():
        shown = value if not isinstance(value, str) or len(value) < 90 else value[:60] + "…"
        click.echo(f"{key:<20} {shown}")


@click.command()
@pass_context
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True,
              help="markdown: the PR comment; json: the review as data.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the review to this file.")
@click.option("--destroy", is_flag=True, help="Review a destroy plan.")
@click.option("--no-checkov", is_flag=True, help="Skip checkov on the plan.")
def plan(ctx, fmt: str, out: Path | None, destroy: bool, no_checkov: bool) -> None:
    """Plan ENV's stack and print a review for the pull request.

    \b
    Synthesizes platform-ENV (skipped when nothing it reads changed), runs terraform init (skipped
    when the providers, backend and lock file are unchanged), plan and show -json, checkov on the
    stack beside Terraform, and writes: a headline (+create ~update -delete ±replace), the monthly
    cost before → after with one line per priced component and its price's source (usage from
    environments/ENV.usage.yaml; see `toolkit cost`), resources by action under their construct
    paths with changed attributes and what forces a replacement, the checkov summary and the full
    plan folded away, under GitHub's 65,536-character limit. Sensitive values and credential-like
    strings are masked.

    \b
    Exit codes: 0 reviewed, 3 the plan deletes or replaces a protected resource (cluster, node
    group, registry, bucket, KMS key), 1 failure, 2 bad input."""
    from toolkit.terraform.plan import ProtectedResourcesError, plan_review

    if ctx.emulated:  # the emulator and its state bucket (an empty state plans a full create)
        from toolkit.local.moto import start_moto
        from toolkit.terraform.state import bootstrap_state_bucket

        start_moto(ctx.paths, ctx.config.aws.endpoint_url)
        bootstrap_state_bucket(ctx.config)
    result = plan_review(ctx, destroy=destroy, checkov=not no_checkov, on_step=lambda s: echo_err(f"plan: {s}"))
    text = result.markdown if fmt == "markdown" else json.dumps({**result.review.to_dict(), "timings": result.timings}, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    click.echo(text)
    timing = ", ".join(f"{k.removesuffix('_s')} {v}{' s' if isinstance(v, (int, float)) else ''}" for k, v in result.timings.items())
    echo_err(f"plan: {result.review.headline()} ({timing})")
    if result.exit_code:
        raise ProtectedResourcesError("plan: protected resources would be deleted or replaced (exit 3); the review "
                                      "above lists them.")


@click.command("hcl")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("cdktf.out/hcl"), show_default=True,
              help="Directory for stacks/<stack>/cdk.tf.")
@click.option("--env", "envs", multiple=True, metavar="ENV", help="Only this environment's stack (repeatable; default: all).")
def hcl(out: Path, envs: tuple[str, ...]) -> None:
    """Write the stacks as plain Terraform HCL: the way out of CDKTF.

    \b
    Runs `cdktf synth --hcl`, then rewrites what its converter gets wrong (references quoted in
    depends_on and ignore_changes, deprecated since Terraform 0.12) and formats the files. Each
    stacks/<stack>/cdk.tf validates, and plans to no change against state deployed from the
    JSON stacks (README: "Leaving CDKTF")."""
    from toolkit.config import load_environment
    from toolkit.paths import ProjectPaths
    from toolkit.terraform.hcl import export_hcl

    for env in envs:
        load_environment(env)  # an unknown environment: the config error, before synthesis
    paths = ProjectPaths.discover()
    for stack, directory in export_hcl(paths, paths.root / out if not out.is_absolute() else out, list(envs) or None).items():
        click.echo(f"{stack:<20} {directory / 'cdk.tf'}")


@click.command("tf-env", hidden=True)
def tf_env() -> None:
    """KEY=VALUE lines for terraform/cdktf (used by the Makefile)."""
    from toolkit.paths import ProjectPaths
    from toolkit.terraform.adapter import terraform_environment

    for key, value in terraform_environment(ProjectPaths.discover()).items():
        click.echo(f"{key}={value}")


@click.command()
@pass_context
@JSON_OPTION
def cost(ctx, as_json: bool) -> None:
    """ENV's monthly cost as its synthesized stack would create it, without a plan: one line per
    priced component (EKS cluster hours, instances and their root volumes, NAT gateway hours and
    data, public IPv4, KMS keys and requests, secrets, log ingestion and storage, AMP samples,
    S3, ECR, SNS, SQS), each with its unit price and the source of that price.

    Usage-based lines (marked u) take their quantities from environments/ENV.usage.yaml (else the
    defaults); resource types the price table cannot price are listed as not priced, never as $0.
    The same figures as the cost section of `toolkit plan`."""
    from toolkit.terraform.cost import PriceTable, stack_estimate
    from toolkit.terraform.review import CostReview, construct_paths, cost_section
    from toolkit.terraform.synth import synthesize_if_changed
    from toolkit.terraform.usage import load_usage

    usage, usage_file = load_usage(ctx.root, ctx.env)
    stack_dir, _ = synthesize_if_changed(ctx, ctx.paths.synth_dir)
    synth = json.loads((stack_dir / "cdk.tf.json").read_text())
    table = PriceTable.load()
    estimate = stack_estimate(synth, construct_paths(synth), ctx.config.aws.region, usage, table)
    if as_json:
        emit_json({"env": ctx.env, "region": ctx.config.aws.region, "usage_file": str(usage_file) if usage_file else None,
                   "prices_date": table.date, "sources": table.sources, **estimate.to_dict()})
        return
    review = CostReview(None, estimate, str(usage_file.relative_to(ctx.root)) if usage_file else None, table.date, table.sources)
    click.echo(f"platform-{ctx.env} ({ctx.config.aws.region}): {estimate.total:,.2f} USD a month")
    for line in cost_section(review)[2:]:
        click.echo(line)


COMMANDS = [state_group, outputs, plan, cost, hcl, tf_env]
