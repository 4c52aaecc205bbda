"""`toolkit render | deploy | rollback | status | smoke`, and `train --remote`: workloads on the
environment's cluster (EKS, any kubeconfig cluster) or the local Docker runtime."""

from __future__ import annotations

import click

from toolkit.cli.options import JSON_OPTION, echo_err, emit_json, pass_context, pass_runtime, quiet, timeout_option
from toolkit.cli.progress import RolloutProgress
from toolkit.errors import BadInputError

ROLLOUT_TIMEOUT = timeout_option("Rollout timeout (default: workloads.rollout_timeout_seconds).")
IMAGE_OPTION = click.option("--image", metavar="REF", help="Image pinned by digest (default: the last `toolkit push --env ENV`).")
MODEL_VERSION_OPTION = click.option("--model-version", metavar="V", help="Model version label for --image (default: from the last push).")


@click.command()
@pass_context
@IMAGE_OPTION
@MODEL_VERSION_OPTION
@click.option("--job/--no-job", default=True, show_default=True, help="Include the GPU training Job.")
@click.option("--training-image", metavar="REF", help="The Job's image pinned by digest (default: the training image of the last push: "
                                                      "training-gpu-<sha> where the Jobs run on a GPU pool).")
@click.option("--sweep", "with_sweep", is_flag=True, help="Also the Indexed Job `toolkit sweep --remote` runs (training.sweep).")
@click.option("--admission-only", is_flag=True, help="Only the admission add-on (a cluster admin applies it once policy-controller "
                                                     "is installed; README 'Signed images, SBOMs and admission').")
def render(ctx, image: str | None, model_version: str | None, job: bool, training_image: str | None, with_sweep: bool,
           admission_only: bool) -> None:
    """Print ENV's Kubernetes manifests as YAML (what `toolkit deploy` applies, plus the training Job),
    and last the admission add-on: the ClusterImagePolicy with which Sigstore's policy-controller
    admits only images signed by a key ENV trusts (workloads.image_admission).

    Values from the stack outputs (IRSA role ARNs, bucket) show as placeholders until the stack is deployed."""
    from toolkit.images.release import Release, ReleaseRecords
    from toolkit.paths import stack_name
    from toolkit.signing_keys import bundle, trusted_keys
    from toolkit.workloads.admission import image_policy
    from toolkit.workloads.manifests import in_set, serving_manifests, to_yaml, training_manifests
    from toolkit.workloads.target import environment_yaml, outputs_for

    try:
        public_keys = trusted_keys(ctx)
        trusted, keys = [(key.name, key.pem.decode()) for key in public_keys], bundle(public_keys)
    except BadInputError as exc:
        echo_err(f"note: {exc}")
        keys = f"<the public keys {ctx.env} trusts: `toolkit signing-key --env {ctx.env}`>"
        trusted = [(ctx.env, keys)]
    admission = [in_set(image_policy(ctx.config, trusted), "admission")] if ctx.config.workloads.image_admission else []
    if admission_only:
        click.echo(to_yaml(admission), nl=False)
        return
    env = ctx.env
    outputs = outputs_for(ctx, required=False)
    if any(str(value).startswith("<") for value in outputs.values()):
        echo_err(f"note: {stack_name(env)} is not deployed; values from its stack outputs are placeholders.")
    records = ReleaseRecords(ctx.paths, env)
    release = records.last_push(image, model_version)
    objects = serving_manifests(ctx.config, outputs, release, keys)
    if job:
        try:
            trainer = Release(training_image, "training") if training_image else records.training_release()
        except BadInputError:  # nothing pushed yet: show the Job with the serving image's reference
            from toolkit.delivery.publish import jobs_training_target

            trainer = release
            echo_err(f"note: no training image pushed for {env} yet: the Job shows the serving image; it runs "
                     f"{jobs_training_target(ctx.config)}-<sha> by digest after `toolkit build` and `toolkit push` "
                     "(or pass --training-image).")
        objects += training_manifests(ctx.config, outputs, trainer, "train-" + env, environment_yaml(ctx))
        if with_sweep:
            objects.append(_sweep_job(ctx, outputs, trainer))
    click.echo(to_yaml(objects + admission), nl=False)


def _sweep_job(ctx, outputs: dict, trainer) -> dict:
    from toolkit.ml.sweep import sweep_id
    from toolkit.ml.table import sha256_file
    from toolkit.workloads.manifests import in_set, sweep_job

    spec = ctx.config.training.sweep
    if spec is None:
        raise BadInputError(f"--sweep: environments/{ctx.env}.yaml has no training.sweep.")
    identity = sweep_id(spec, ctx.config.training, sha256_file(ctx.root / ctx.config.training.dataset))
    return in_set(sweep_job(ctx.config, outputs, trainer, f"sweep-{ctx.env}", identity), "training")


@click.command()
@pass_runtime()
@IMAGE_OPTION
@MODEL_VERSION_OPTION
@ROLLOUT_TIMEOUT
@click.option("--smoke/--no-smoke", default=True, show_default=True, help="POST a sample record to /v1/predict afterwards.")
@JSON_OPTION
def deploy(runtime, image, model_version, timeout, smoke, as_json) -> None:
    """Deploy the serving image to ENV and wait for the rollout.

    \b
    Kubernetes (EKS from the stack outputs, or --kubeconfig/--context): server-side apply of the
    manifests (field manager 'toolkit'), prune of dropped objects, rollout wait; a failed or
    timed-out rollout is rolled back to the previous release while the old pods keep serving.
    Local environment: the image runs on the local Docker engine and replaces the serving
    container only once a candidate of it is ready.
    Exit 1 with the reason (image pull error, crash loop, probe failure) when it fails."""
    from toolkit.delivery.deploy import deploy_release
    from toolkit.images.release import ReleaseRecords

    ctx = runtime.ctx
    release = ReleaseRecords(ctx.paths, ctx.env).last_push(image, model_version)
    timeout = timeout or ctx.config.workloads.rollout_timeout_seconds
    if not as_json:
        echo_err(f"deploying {release.image} (model {release.model_version}) to {ctx.env}")
    runtime.prepare(echo_err)
    result = deploy_release(ctx, runtime, release, timeout, RolloutProgress(not as_json), quiet if as_json else echo_err, smoke)
    if as_json:
        emit_json(result)
        return
    for ref in result.get("pruned", []):
        click.echo(f"pruned   {ref}")
    click.echo(f"deployed {release.image} (model {release.model_version}) in {result['seconds']} s")
    if smoke:
        _print_smoke(result["smoke"])


def _print_smoke(smoke: dict) -> None:
    prediction = smoke["prediction"]
    probabilities = "  ".join(f"p({k})={v:.3f}" for k, v in prediction["probabilities"].items())
    click.echo(f"smoke    {smoke['where']}/v1/predict → label {prediction['label']}  {probabilities}  (model {smoke['model_version']})")


@click.command()
@pass_runtime()
@ROLLOUT_TIMEOUT
@JSON_OPTION
def rollback(runtime, timeout, as_json) -> None:
    """Re-deploy the release before the one that is live (from the release history), once its image
    passes the checks a deploy makes: signed and SBOM-attested by a key ENV trusts, and promoted
    where ENV takes only promoted digests. Nothing changes when it does not."""
    from toolkit.delivery.deploy import rollback_release

    timeout = timeout or runtime.ctx.config.workloads.rollout_timeout_seconds
    result = rollback_release(runtime.ctx, runtime, timeout, RolloutProgress(not as_json), quiet if as_json else echo_err)
    emit_json(result) if as_json else click.echo(f"rolled back to {result['release']} (model {result['model_version']})")


@click.command()
@pass_runtime()
@JSON_OPTION
def status(runtime, as_json) -> None:
    """Show what ENV serves: model version, image digest, replicas, recent events."""
    from toolkit.delivery.promotion import model_sweep
    from toolkit.loop.retrain import last_decision

    info = runtime.status()
    info["sweep"] = model_sweep(runtime.ctx, info["model_version"]) if info.get("model_version") else None
    decision = last_decision(runtime.ctx)
    info["last_retrain"] = {k: decision[k] for k in ("time", "decision", "reason", "url") if k in decision} if decision else None
    if as_json:
        emit_json(info)
        return
    if not info["deployed"]:
        click.echo(f"{runtime.ctx.env}: nothing deployed")
        return
    click.echo(f"model    {info['model_version']}")
    if info["sweep"]:
        sweep = info["sweep"]
        click.echo(f"sweep    {sweep['id']}, trial {sweep['trial']} ({sweep['metric']} {sweep['cv_mean']:.4f} ± {sweep['cv_std']:.4f} "
                   "over its folds)")
    click.echo(f"image    {info['image']}")
    for line in runtime.status_lines(info):
        click.echo(line)
    click.echo(f"history  {len(info['history'])} release(s); previous: {info['history'][-2] if len(info['history']) > 1 else '-'}")
    decision = info.get("last_retrain")
    if decision:
        click.echo(f"retrain  {decision['time']}: {decision['decision']} ({decision['reason']})")


@click.command()
@pass_runtime()
@JSON_OPTION
def smoke(runtime, as_json) -> None:
    """POST a sample record from ENV's dataset to the deployed server's /v1/predict."""
    result = runtime.smoke_test()
    emit_json(result) if as_json else _print_smoke(result)


COMMANDS = [render, deploy, rollback, status, smoke]
