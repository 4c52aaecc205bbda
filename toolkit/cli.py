"""`toolkit`: one click app; each command is a thin wrapper over a library call.

Exit codes: 0 ok, 1 failure, 2 bad input (config, data, arguments, corrupt artifact).
Heavy imports (numpy, matplotlib) happen inside commands so `toolkit --help` is instant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from toolkit.errors import BadInputError, ToolkitError


class _ToolkitGroup(click.Group):
    """Turns a ToolkitError into one clear paragraph on stderr and its exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            click.secho(f"error: {exc}", err=True, fg="red")
            ctx.exit(exc.exit_code)


def _emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


ENV_OPTION = click.option("--env", "env", required=True, metavar="ENV", help="Environment: a file in environments/ (local, dev, staging, prod).")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")


@click.group(cls=_ToolkitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="toolkit")
def cli() -> None:
    """ML platform toolkit: train models with the numpy core, build and push their serving
    image, and deploy it to the Terraform-provisioned platform of each environment.

    \b
    Release flow:  toolkit train → build → push → deploy (→ status, rollback)
    Local:         `make demo` does it all on the local environment (moto, Docker, registry).

    Every command reads its settings from environments/<ENV>.yaml.
    """


# ---------------------------------------------------------------- config


@cli.group("config")
def config_group() -> None:
    """Inspect and validate environment files."""


@config_group.command("list")
@JSON_OPTION
def config_list(as_json: bool) -> None:
    """List the known environments."""
    from toolkit.config import known_environments

    envs = known_environments()
    _emit_json(envs) if as_json else click.echo("\n".join(envs))


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
    _emit_json(data) if as_json else click.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


# ---------------------------------------------------------------- train


@cli.command()
@ENV_OPTION
@click.option("--data", metavar="CSV", help="CSV to train on, a path or s3://bucket/key (default: training.dataset).")
@click.option("--label", help="Label column. A label other than the config's drops the config's target/categorical/drop settings.")
@click.option("--target", help="Derive a binary target from the label, e.g. 'num > 0'.")
@click.option("--categorical", multiple=True, metavar="COL", help="One-hot encode this column (repeatable).")
@click.option("--drop", "drop_columns", multiple=True, metavar="COL", help="Ignore this (id-like) column (repeatable).")
@click.option("--delimiter", help="CSV delimiter (default: detected).")
@click.option("--cv", "cv_folds", type=click.IntRange(min=2), help="Also run K-fold stratified cross-validation and report mean ± std.")
@click.option("--epochs", type=click.IntRange(min=1), help="Override training.epochs.")
@click.option("--seed", type=click.IntRange(min=0), help="Override training.seed.")
@click.option("--out", type=click.Path(path_type=Path), help="Artifact root (default: artifacts/<ENV>).")
@click.option("--upload", metavar="S3_URL", help="Also upload the artifact to s3://bucket/prefix/<version>/ (the artifact store).")
@click.option("--remote", is_flag=True, help="Run as a GPU training Job on ENV's cluster instead; logs are streamed.")
@click.option("--kubeconfig", type=click.Path(dir_okay=False), metavar="FILE", help="With --remote: a kubeconfig instead of EKS.")
@click.option("--context", metavar="NAME", help="With --remote: the kubeconfig context.")
@click.option("--timeout", type=click.FloatRange(min=1), metavar="SECONDS", help="With --remote: how long to wait for the Job.")
@JSON_OPTION
def train(env, data, label, target, categorical, drop_columns, delimiter, cv_folds, epochs, seed, out, upload, remote,
          kubeconfig, context, timeout, as_json) -> None:
    """Train a classifier with the numpy core and save a verified model artifact.

    Splits the data into stratified train/validation/test sets, fits preprocessing on the
    training rows only, trains with early stopping on validation loss, and writes
    artifacts/<ENV>/<version>/ with weights.npz, manifest.json, metrics.json and
    training_curves.png (artifacts/<ENV>/latest points at it).

    \b
    Examples:
      toolkit train --env local
      toolkit train --env local --cv 5
      toolkit train --env local --data other.csv --label outcome --categorical colour
      toolkit train --env dev --remote
    """
    if remote:
        from toolkit.cli_workloads import train_remote

        return train_remote(env, kubeconfig, context, timeout, as_json)
    from toolkit.config import load_environment, project_root
    from toolkit.train import DatasetChoice, train_and_save

    config = load_environment(env)
    if data is not None and data.startswith("s3://"):
        from toolkit.artifact_store import download_file

        data = download_file(config, data)
    data = Path(data) if data is not None else None
    settings = config.training
    overrides = {k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None}
    if overrides:
        settings = settings.model_copy(update=overrides)
    choice = DatasetChoice.from_config(
        settings, path=data, label=label, target=target, categorical=categorical,
        drop_columns=drop_columns, delimiter=delimiter,
    )
    out_root = out or project_root() / "artifacts" / env
    progress = _EpochProgress(settings.epochs, enabled=not as_json)
    on_fold = None if as_json else _report_fold
    try:
        result = train_and_save(choice, settings, out_root, env=env, cv_folds=cv_folds, on_epoch=progress.update, on_fold=on_fold)
    finally:
        progress.close()
    summary = {
        "version": result.version,
        "artifact": str(result.artifact_dir),
        "metrics_file": str(result.metrics_path),
        "curves_png": str(result.curves_path),
        "test": {k: v for k, v in result.metrics["test"].items()},
        "cv": result.metrics.get("cv"),
        "epochs_run": result.metrics["training"]["epochs_run"],
        "best_epoch": result.metrics["training"]["best_epoch"],
    }
    if upload:
        from toolkit.artifact_store import upload_artifact

        summary["uploaded"] = upload_artifact(config, result.artifact_dir, upload)
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"model    {result.version}  ({summary['epochs_run']} epochs, best {summary['best_epoch']})")
    click.echo(f"test     {_format_report(result.metrics['test'])}")
    if result.metrics.get("cv"):
        cv = result.metrics["cv"]
        parts = [f"{k} {cv[k]['mean']:.3f} ± {cv[k]['std']:.3f}" for k in ("accuracy", "roc_auc", "f1")]
        click.echo(f"cv({cv['folds']})    " + "  ".join(parts))
    click.echo(f"artifact {result.artifact_dir}")
    click.echo(f"metrics  {result.metrics_path}")
    click.echo(f"curves   {result.curves_path or '(matplotlib not installed: no plot; the history is in metrics.json)'}")
    if upload:
        click.echo(f"uploaded {summary['uploaded']}")


class _EpochProgress:
    """A per-epoch progress bar showing loss and validation metrics (tqdm, on stderr)."""

    def __init__(self, epochs: int, enabled: bool) -> None:
        self.enabled, self.epochs, self.bar = enabled, epochs, None

    def update(self, record: dict) -> None:
        if not self.enabled:
            return
        if self.bar is None or record["epoch"] == 1:
            self.close()
            from tqdm import tqdm

            self.bar = tqdm(total=self.epochs, desc="train", unit="epoch", file=sys.stderr, leave=False, dynamic_ncols=True,
                             disable=None)  # no bar in non-TTY logs
        self.bar.set_postfix(
            loss=f"{record['loss']:.4f}", val_loss=f"{record.get('val_loss', float('nan')):.4f}",
            val_acc=f"{record.get('val_accuracy', float('nan')):.3f}", val_auc=f"{record.get('val_roc_auc', float('nan')):.3f}",
            refresh=False,
        )
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _report_fold(index: int, report: dict) -> None:
    click.echo(f"fold {index + 1}   {_format_report(report)}", err=True)


def _format_report(report: dict) -> str:
    keys = ("accuracy", "precision", "recall", "f1", "roc_auc")
    return "  ".join(f"{k} {report[k]:.3f}" for k in keys)


# ---------------------------------------------------------------- evaluate / predict


MODEL_OPTION = click.option(
    "--model", "model_dir", required=True, type=click.Path(path_type=Path),
    help="Model artifact directory, e.g. artifacts/local/latest.",
)


@cli.command()
@MODEL_OPTION
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Labelled CSV to score.")
@click.option("--delimiter", help="CSV delimiter (default: detected).")
@JSON_OPTION
def evaluate(model_dir: Path, data: Path, delimiter: str | None, as_json: bool) -> None:
    """Score a saved model on a labelled CSV (checksums are verified first)."""
    from toolkit.artifacts import load_artifact
    from toolkit.train import evaluate_artifact

    model = load_artifact(model_dir)
    report = evaluate_artifact(model, data, delimiter)
    if as_json:
        _emit_json({"version": model.version, "data": str(data), **report})
        return
    click.echo(f"model {model.version} on {data} ({report['n']} rows)")
    click.echo(_format_report(report))
    click.echo("confusion matrix (rows: true, columns: predicted; classes " + ", ".join(model.classes) + ")")
    for row in report["confusion_matrix"]:
        click.echo("  " + " ".join(f"{v:5d}" for v in row))


@cli.command()
@MODEL_OPTION
@click.option("--input", "input_path", default="-", type=click.Path(path_type=Path, allow_dash=True),
              help="CSV or JSON records ([{...}] or {\"records\": [...]}); '-' reads stdin.")
@JSON_OPTION
def predict(model_dir: Path, input_path: Path, as_json: bool) -> None:
    """Predict labels and class probabilities for records by feature name."""
    from toolkit.artifacts import load_artifact
    from toolkit.train import predict_records, read_records

    model = load_artifact(model_dir)
    if str(input_path) == "-":
        columns, n, source = read_records(None, sys.stdin.read())
    else:
        columns, n, source = read_records(input_path)
    predictions = predict_records(model, columns, n, source)
    if as_json:
        _emit_json({"model_version": model.version, "predictions": predictions})
        return
    header = ["row", "label"] + [f"p({c})" for c in model.classes]
    click.echo("  ".join(f"{h:>8}" for h in header))
    for i, p in enumerate(predictions, start=1):
        cells = [str(i), p["label"]] + [f"{p['probabilities'][c]:.4f}" for c in model.classes]
        click.echo("  ".join(f"{c:>8}" for c in cells))


@cli.command()
@MODEL_OPTION
@click.option("--env", "env", metavar="ENV", help="Take the batch and body limits (and port) from ENV's serving settings.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TOOLKIT_HOST", help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), envvar="TOOLKIT_PORT",
              help="Port (default: serving.port of ENV, else 8080).")
@click.option("--max-batch-size", type=click.IntRange(min=1), envvar="TOOLKIT_MAX_BATCH_SIZE",
              help="Records per request (default: serving.max_batch_size of ENV, else 256).")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), envvar="TOOLKIT_MAX_BODY_BYTES",
              help="Request body limit (default: serving.max_body_bytes of ENV, else 1 MiB).")
def serve(model_dir: Path, env: str | None, host: str, port: int | None, max_batch_size: int | None,
          max_body_bytes: int | None) -> None:
    """Serve a model over HTTP: POST /v1/predict, GET /healthz /readyz /metrics /docs.

    The artifact's checksums are verified before the server starts. In the serving image the
    settings come from TOOLKIT_* environment variables (a ConfigMap on Kubernetes)."""
    import uvicorn

    from toolkit.serve.app import create_app

    limits = {}
    if env:
        from toolkit.config import load_environment

        serving = load_environment(env).serving
        limits = {"max_batch_size": serving.max_batch_size, "max_body_bytes": serving.max_body_bytes}
        port = port or serving.port
    limits.update({k: v for k, v in {"max_batch_size": max_batch_size, "max_body_bytes": max_body_bytes}.items() if v})
    app = create_app(model_dir, **limits)
    click.echo(f"serving model {app.state.model.version} on http://{host}:{port or 8080}", err=True)
    uvicorn.run(app, host=host, port=port or 8080, log_level="warning")


# ---------------------------------------------------------------- infrastructure


@cli.group("local")
def local_group() -> None:
    """Start, stop and inspect the local environment's services (127.0.0.1 only)."""


def _local_config():
    from toolkit.config import load_environment

    config = load_environment("local")
    if not config.aws.endpoint_url:
        raise BadInputError("environments/local.yaml has no aws.endpoint_url; the local environment needs one.")
    return config


@local_group.command("up")
@click.option("--aws-only", is_flag=True, help="Start only the moto server (no Docker engine or registry).")
@JSON_OPTION
def local_up(aws_only: bool, as_json: bool) -> None:
    """Start what the local environment needs, reusing what already runs: the moto server (AWS),
    a Docker engine (an existing one, else dockerd), the OCI registry standing in for ECR (its
    htpasswd login is the one ECR hands out), and the offline base image (built once)."""
    from toolkit.config import project_root
    from toolkit.local import start_local_services

    _print_services(start_local_services(project_root(), _local_config(), aws_only=aws_only, on_line=_echo_err), as_json)


@local_group.command("down")
def local_down() -> None:
    """Stop the local services this toolkit started (by pidfile). Moto's state is in memory and goes with it."""
    from toolkit.config import project_root
    from toolkit.local import stop_local_services

    for name, stopped in stop_local_services(project_root()).items():
        click.echo(f"{name} {'stopped' if stopped else 'was not running'}")


@local_group.command("status")
@JSON_OPTION
def local_status(as_json: bool) -> None:
    """Show the local services, their URLs, pids and logs; exit 1 if any is down."""
    from toolkit.config import project_root
    from toolkit.local import local_services_status

    services = local_services_status(project_root(), _local_config())
    _print_services(services, as_json)
    if not all(s.running for s in services):
        raise SystemExit(1)


def _echo_err(line: str) -> None:
    click.echo(line, err=True)


def _print_services(services, as_json: bool) -> None:
    rows = [{"name": s.name, "url": s.url, "pid": s.pid, "running": s.running, "log": str(s.log)} for s in services]
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        click.echo(f"{'up  ' if r['running'] else 'down'}  {r['name']:<18} {r['url']:<26} pid {r['pid'] or '-':<8} log {r['log']}")


@cli.command()
@ENV_OPTION
@click.option("--model", "model_dir", type=click.Path(path_type=Path), help="Model artifact (default: artifacts/ENV/latest).")
@JSON_OPTION
def build(env: str, model_dir: Path | None, as_json: bool) -> None:
    """Build ENV's serving image with the model baked in (docker SDK, streamed output).

    The model's checksums are verified first. Tag: <model version>-<git short sha>."""
    from toolkit.config import load_environment, project_root
    from toolkit.images import build_image, save_last_build

    config = load_environment(env)
    root = project_root()
    _ensure_emulated_services(root, config)
    model_dir = model_dir or root / "artifacts" / env / "latest"
    quiet = (lambda line: None) if as_json else _echo_err
    image = build_image(root, model_dir, config.registry.name, config.serving.base_image, on_line=quiet)
    training = build_image(root, model_dir, config.registry.name, config.serving.base_image, on_line=quiet, target="training")
    save_last_build(root, env, image, training)
    result = {"image": image.reference, "id": image.image_id, "size_mb": round(image.size_bytes / 1e6, 1),
              "training_image": training.reference, "training_size_mb": round(training.size_bytes / 1e6, 1)}
    if as_json:
        _emit_json(result)
        return
    click.echo(f"built {image.reference} ({result['size_mb']} MB)")
    click.echo(f"built {training.reference} ({result['training_size_mb']} MB, for training Jobs)")


@cli.command()
@ENV_OPTION
@click.option("--image", "image_ref", help="Local image to push (default: the last `toolkit build --env ENV`).")
@JSON_OPTION
def push(env: str, image_ref: str | None, as_json: bool) -> None:
    """Push the serving and training images to ENV's registry with an ECR login (boto3
    get_authorization_token), with a progress bar and retries.

    Refuses 'latest' and a tag the immutable registry holds with other content (pushing the same
    image again is a no-op); prints the digests."""
    from toolkit.config import load_environment, project_root
    from toolkit.images import last_build, push_image

    config = load_environment(env)
    root = project_root()
    _ensure_emulated_services(root, config)
    from toolkit.images import image_model_version, registry_login
    from toolkit.workloads.manifests import Release
    from toolkit.workloads.target import save_last_push

    # The serving image and (from `toolkit build`) the training image the GPU Jobs run.
    refs = [image_ref] if image_ref else [last_build(root, env), last_build(root, env, "training_image")]
    pushed = []
    for ref in filter(None, refs):
        progress = _PushProgress(enabled=not as_json)
        try:
            digest = push_image(root, ref, config, on_line=_echo_err, on_event=progress.update if not as_json else None)
        finally:
            progress.close()
        pushed.append(f"{registry_login(config).host}/{config.registry.name}@{digest}")
        if not as_json:
            click.echo(f"pushed {pushed[-1]}  ({ref})")
    training = pushed[1] if len(pushed) > 1 else None
    save_last_push(root, env, Release(pushed[0], image_model_version(root, refs[0])), training)
    if as_json:
        _emit_json({"image": refs[0], "pushed": pushed[0], "digest": pushed[0].rpartition("@")[2], "training_image": training})


def _ensure_emulated_services(root: Path, config) -> None:
    """An environment on an AWS emulator (aws.endpoint_url) gets its local services started first."""
    if config.aws.endpoint_url:
        from toolkit.local import start_local_services

        start_local_services(root, config, on_line=_echo_err)


class _PushProgress:
    """A byte progress bar over all layers of a push (tqdm on stderr), plus one line per finished layer."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None
        self.layers: dict[str, tuple[int, int]] = {}

    def update(self, event: dict) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=0, desc="push", unit="B", unit_scale=True, file=sys.stderr, leave=True, disable=None)
        layer, status = event["id"], event["status"]
        detail = event.get("progressDetail") or {}
        if "total" in detail:
            self.layers[layer] = (detail.get("current", 0), detail["total"])
        elif status in ("Pushed", "Layer already exists") and layer in self.layers:
            self.layers[layer] = (self.layers[layer][1], self.layers[layer][1])
        if status in ("Pushed", "Layer already exists"):
            self.bar.write(f"{layer}: {status}", file=sys.stderr)
        self.bar.total = sum(t for _, t in self.layers.values())
        self.bar.n = sum(c for c, _ in self.layers.values())
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@cli.group("state")
def state_group() -> None:
    """Terraform remote state."""


@state_group.command("bootstrap")
@ENV_OPTION
def state_bootstrap(env: str) -> None:
    """Create ENV's state bucket (versioned, encrypted, private) if it is missing.

    For an environment with aws.endpoint_url (local), the local services are started first."""
    from toolkit.config import load_environment, project_root
    from toolkit.state import bootstrap_state_bucket

    config = load_environment(env)
    if config.aws.endpoint_url:
        from toolkit.local import start_moto

        start_moto(project_root(), config.aws.endpoint_url)
    created = bootstrap_state_bucket(config)
    click.echo(f"state bucket s3://{config.state.bucket} {'created' if created else 'already exists'}")


@cli.command()
@ENV_OPTION
@JSON_OPTION
def outputs(env: str, as_json: bool) -> None:
    """Print the outputs of ENV's deployed stack (cluster endpoint, registry URL, bucket, role ARNs)."""
    from toolkit.config import project_root
    from toolkit.infra_outputs import stack_outputs

    values = stack_outputs(env, project_root())
    if as_json:
        _emit_json(values)
        return
    for key, value in values.items():
        shown = value if not isinstance(value, str) or len(value) < 90 else value[:60] + "…"
        click.echo(f"{key:<20} {shown}")


@cli.command()
@ENV_OPTION
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True,
              help="markdown: the PR comment; json: the review as data.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the review to this file.")
@click.option("--destroy", is_flag=True, help="Review a destroy plan.")
@click.option("--no-checkov", is_flag=True, help="Skip checkov on the plan.")
def plan(env: str, fmt: str, out: Path | None, destroy: bool, no_checkov: bool) -> None:
    """Plan ENV's stack and print a review for the pull request.

    \b
    Synthesizes platform-ENV, runs terraform init, plan and show, checkov on the plan, and writes:
    a headline (+create ~update -delete ±replace), resources by action under their construct
    paths with changed attributes and what forces a replacement, the node-pool cost delta, the
    checkov summary and the full plan folded away, under GitHub's 65,536-character limit.
    Sensitive values and credential-like strings are masked.

    \b
    Exit codes: 0 reviewed, 3 the plan deletes or replaces a protected resource (cluster, node
    group, registry, bucket, KMS key), 1 failure, 2 bad input."""
    from toolkit.config import load_environment, project_root
    from toolkit.plan import plan_review

    config = load_environment(env)
    root = project_root()
    if config.aws.endpoint_url:  # the emulator and its state bucket (an empty state plans a full create)
        from toolkit.local import start_moto
        from toolkit.state import bootstrap_state_bucket

        start_moto(root, config.aws.endpoint_url)
        bootstrap_state_bucket(config)
    result = plan_review(config, root, destroy=destroy, checkov=not no_checkov, on_step=lambda s: _echo_err(f"plan: {s}"))
    text = result.markdown if fmt == "markdown" else json.dumps({**result.review.to_dict(), "timings": result.timings}, indent=2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
    click.echo(text)
    timing = ", ".join(f"{k.removesuffix('_s')} {v} s" for k, v in result.timings.items())
    _echo_err(f"plan: {result.review.headline()} ({timing})")
    if result.exit_code:
        _echo_err("plan: protected resources would be deleted or replaced (exit 3)")
        sys.exit(result.exit_code)


@cli.command("tf-env", hidden=True)
def tf_env() -> None:
    """KEY=VALUE lines for terraform/cdktf (used by the Makefile)."""
    from toolkit.config import project_root
    from toolkit.terraform import terraform_environment

    for key, value in terraform_environment(project_root()).items():
        click.echo(f"{key}={value}")


from toolkit.cli_workloads import COMMANDS as _WORKLOAD_COMMANDS  # noqa: E402  (needs `cli` defined above)

for _command in _WORKLOAD_COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="toolkit")


if __name__ == "__main__":
    main()
