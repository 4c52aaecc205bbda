"""Workload commands of the `toolkit` CLI: render, deploy, rollback, status, smoke.

Each is a thin function over toolkit.workloads; registered on the main group in toolkit.cli.
"""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.errors import ToolkitError

ENV_OPTION = click.option("--env", "env", required=True, metavar="ENV", help="Environment: a file in environments/.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


def cluster_options(fn):
    """--kubeconfig/--context: any cluster instead of the environment's EKS (or local Docker runtime)."""
    fn = click.option("--context", metavar="NAME", help="kubeconfig context (implies a kubeconfig cluster).")(fn)
    fn = click.option("--kubeconfig", type=click.Path(dir_okay=False), metavar="FILE",
                      help="Use this kubeconfig instead of EKS from the stack outputs.")(fn)
    return fn


def timeout_option(fn):
    return click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS",
                        help="Rollout timeout (default: workloads.rollout_timeout_seconds).")(fn)


def _emit_json(data) -> None:
    from toolkit.cli import _emit_json as emit

    emit(data)


def _err(line: str) -> None:
    click.echo(line, err=True)


def _context(env: str):
    from toolkit.config import load_environment, project_root

    return load_environment(env), project_root()


class _RolloutProgress:
    """One status line per change of the rollout's state (stderr)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.last = enabled, None

    def __call__(self, event: dict) -> None:
        if self.enabled and event["message"] != self.last:
            self.last = event["message"]
            _err(f"  [{event['elapsed']:5.1f}s] {event['message']}")


@click.command()
@ENV_OPTION
@click.option("--image", metavar="REF", help="Image pinned by digest (default: the last `toolkit push --env ENV`).")
@click.option("--model-version", metavar="V", help="Model version label for --image (default: from the last push).")
@click.option("--job/--no-job", default=True, show_default=True, help="Include the GPU training Job.")
def render(env: str, image: str | None, model_version: str | None, job: bool) -> None:
    """Print ENV's Kubernetes manifests as YAML (what `toolkit deploy` applies, plus the training Job).

    Values from the stack outputs (IRSA role ARNs, bucket) show as placeholders until the stack is deployed."""
    from toolkit.workloads.manifests import serving_manifests, to_yaml, training_manifests
    from toolkit.workloads.target import environment_yaml, outputs_for, release_for

    config, root = _context(env)
    outputs = outputs_for(env, root, required=False)
    if any(str(value).startswith("<") for value in outputs.values()):
        _err(f"note: platform-{env} is not deployed; values from its stack outputs are placeholders.")
    release = release_for(root, env, image, model_version)
    objects = serving_manifests(config, outputs, release)
    if job:
        from toolkit.errors import BadInputError
        from toolkit.workloads.target import training_release

        try:
            trainer = training_release(root, env)
        except BadInputError:
            trainer = release  # nothing pushed yet: show the Job with the serving image's reference
        objects += training_manifests(config, outputs, trainer, "train-" + env, environment_yaml(config, root))
    click.echo(to_yaml(objects), nl=False)


@click.command()
@ENV_OPTION
@click.option("--image", metavar="REF", help="Image pinned by digest (default: the last `toolkit push --env ENV`).")
@click.option("--model-version", metavar="V", help="Model version label for --image (default: from the last push).")
@cluster_options
@timeout_option
@click.option("--smoke/--no-smoke", default=True, show_default=True, help="POST a sample record to /v1/predict afterwards.")
@JSON_OPTION
def deploy(env, image, model_version, kubeconfig, context, timeout, smoke, as_json) -> None:
    """Deploy the serving image to ENV and wait for the rollout.

    \b
    Kubernetes (EKS from the stack outputs, or --kubeconfig/--context): server-side apply of the
    manifests (field manager 'toolkit'), prune of dropped objects, rollout wait; a failed or
    timed-out rollout is rolled back to the previous release while the old pods keep serving.
    Local environment: the image runs on the local Docker engine and replaces the serving
    container only once a candidate of it is ready.
    Exit 1 with the reason (image pull error, crash loop, probe failure) when it fails."""
    from toolkit.workloads.target import release_for, resolve_target

    config, root = _context(env)
    release = release_for(root, env, image, model_version)
    target = resolve_target(config, root, kubeconfig, context)
    timeout = timeout or config.workloads.rollout_timeout_seconds
    if not as_json:
        _err(f"deploying {release.image} (model {release.model_version}) to {env}")
    if target.local:
        from toolkit.cli import _ensure_emulated_services
        from toolkit.images import registry_login
        from toolkit.workloads.local_runtime import deploy_local, service_url

        _ensure_emulated_services(root, config)
        result = deploy_local(root, config, release, registry_login(config), timeout, on_line=(lambda l: None) if as_json else _err)
        base = service_url(config)
    else:
        from toolkit.workloads.rollout import deploy as deploy_k8s

        outcome = deploy_k8s(target.kube, config, target.outputs, release, timeout, _RolloutProgress(not as_json))
        result = {"release": release.image, "model_version": release.model_version, "applied": outcome.applied,
                  "pruned": outcome.pruned, "seconds": round(outcome.seconds, 1)}
        base = None
    if smoke:
        try:
            result["smoke"] = _smoke(config, root, target, base)
        except ToolkitError as exc:
            # The rollout's probes passed, so this is not rolled back by itself: say how.
            raise type(exc)(f"{exc}\nThe release is deployed; `toolkit rollback --env {env}` returns to the previous one.") from None
    if as_json:
        _emit_json(result)
        return
    for ref in result.get("pruned", []):
        click.echo(f"pruned   {ref}")
    click.echo(f"deployed {release.image} (model {release.model_version}) in {result['seconds']} s")
    if smoke:
        _print_smoke(result["smoke"])


def _smoke(config, root: Path, target, base_url: str | None) -> dict:
    from toolkit.workloads.smoke import smoke_test_service, smoke_test_url

    return smoke_test_url(base_url, config, root) if base_url is not None else smoke_test_service(target.kube, config, root)


def _print_smoke(smoke: dict) -> None:
    prediction = smoke["prediction"]
    probabilities = "  ".join(f"p({k})={v:.3f}" for k, v in prediction["probabilities"].items())
    click.echo(f"smoke    {smoke['where']}/v1/predict → label {prediction['label']}  {probabilities}  (model {smoke['model_version']})")


@click.command()
@ENV_OPTION
@cluster_options
@timeout_option
@JSON_OPTION
def rollback(env, kubeconfig, context, timeout, as_json) -> None:
    """Re-deploy the release before the one that is live (from the release history)."""
    from toolkit.workloads.target import resolve_target

    config, root = _context(env)
    target = resolve_target(config, root, kubeconfig, context)
    timeout = timeout or config.workloads.rollout_timeout_seconds
    if target.local:
        from toolkit.images import registry_login
        from toolkit.workloads.local_runtime import rollback_local

        result = rollback_local(root, config, registry_login(config), timeout, on_line=(lambda l: None) if as_json else _err)
        image = result["release"]
    else:
        from toolkit.workloads.rollout import rollback as rollback_k8s

        outcome = rollback_k8s(target.kube, config, target.outputs, timeout, _RolloutProgress(not as_json))
        image = outcome.release.image
        result = {"release": image, "model_version": outcome.release.model_version, "seconds": round(outcome.seconds, 1)}
    _emit_json(result) if as_json else click.echo(f"rolled back to {image} (model {result['model_version']})")


@click.command()
@ENV_OPTION
@cluster_options
@JSON_OPTION
def status(env, kubeconfig, context, as_json) -> None:
    """Show what ENV serves: model version, image digest, replicas, recent events."""
    from toolkit.workloads.target import resolve_target

    config, root = _context(env)
    target = resolve_target(config, root, kubeconfig, context)
    if target.local:
        from toolkit.workloads.local_runtime import status_local

        info = status_local(root, config)
    else:
        from toolkit.workloads.rollout import status as status_k8s

        info = status_k8s(target.kube, config)
    if as_json:
        _emit_json(info)
        return
    if not info["deployed"]:
        click.echo(f"{env}: nothing deployed")
        return
    click.echo(f"model    {info['model_version']}")
    click.echo(f"image    {info['image']}")
    if target.local:
        click.echo(f"runtime  docker container {info['container']} ({info['state']}, health {info['health']}, "
                   f"{'ready' if info['ready'] else 'NOT ready'}) at {info['url']}")
    else:
        r = info["replicas"]
        click.echo(f"replicas desired {r['desired']}  updated {r['updated']}  ready {r['ready']}  available {r['available']}"
                   f"  (generation {info['generation']}, observed {info['observed_generation']})")
        for event in info["events"]:
            click.echo(f"event    {event}")
    click.echo(f"history  {len(info['history'])} release(s); previous: {info['history'][-2] if len(info['history']) > 1 else '-'}")


@click.command()
@ENV_OPTION
@cluster_options
@JSON_OPTION
def smoke(env, kubeconfig, context, as_json) -> None:
    """POST a sample record from ENV's dataset to the deployed server's /v1/predict."""
    from toolkit.workloads.local_runtime import service_url
    from toolkit.workloads.target import resolve_target

    config, root = _context(env)
    target = resolve_target(config, root, kubeconfig, context)
    result = _smoke(config, root, target, service_url(config) if target.local else None)
    _emit_json(result) if as_json else _print_smoke(result)


def train_remote(env: str, kubeconfig, context, timeout, as_json: bool) -> None:
    """`toolkit train --remote`: the GPU training Job on ENV's cluster, logs streamed."""
    from toolkit.artifact_store import upload_file
    from toolkit.workloads.jobs import run_training_job
    from toolkit.workloads.target import environment_yaml, resolve_target, training_release

    config, root = _context(env)
    target = resolve_target(config, root, kubeconfig, context)
    if target.local:
        from toolkit.errors import BadInputError

        raise BadInputError(f"{env} has no Kubernetes cluster (its EKS is emulated): train locally with "
                            f"`toolkit train --env {env}`, or give --kubeconfig/--context for a real cluster.")
    release = training_release(root, env)
    dataset = root / config.training.dataset
    url = f"s3://{target.outputs['bucket']}/{config.artifact_store.datasets_prefix}{dataset.name}"
    if upload_file(config, dataset, url) and not as_json:
        _err(f"uploaded {dataset.name} to {url}")
    result = run_training_job(target.kube, config, target.outputs, release, environment_yaml(config, root),
                              timeout or config.workloads.remote_training.active_deadline_seconds,
                              on_log=(lambda l: None) if as_json else _err)
    result["artifacts"] = f"s3://{target.outputs['bucket']}/{config.artifact_store.models_prefix}{env}/"
    _emit_json(result) if as_json else click.echo(f"training Job {result['job']} completed in {result['seconds']} s; "
                                                  f"artifact under {result['artifacts']}")


COMMANDS = [render, deploy, rollback, status, smoke]
