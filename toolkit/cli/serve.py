"""`toolkit serve`: the inference server on uvicorn."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import MODEL_OPTION, echo_err


@click.command()
@MODEL_OPTION
@click.option("--env", "env", metavar="ENV",
              help="Take the settings from ENV's environment file (serving limits, port, feedback loop) and verify the model "
                   "against the keys ENV trusts.")
@click.option("--host", help="Address to bind (default: $TOOLKIT_HOST, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: serving.port of ENV, else $TOOLKIT_PORT, else 8080).")
@click.option("--max-batch-size", type=click.IntRange(min=1),
              help="Records per request (default: serving.max_batch_size of ENV, else $TOOLKIT_MAX_BATCH_SIZE, else 256).")
@click.option("--max-body-bytes", type=click.IntRange(min=1024),
              help="Request body limit (default: serving.max_body_bytes of ENV, else $TOOLKIT_MAX_BODY_BYTES, else 1 MiB).")
@click.option("--header-timeout", type=click.IntRange(1, 300), metavar="SECONDS",
              help="Close a connection whose request head is not complete by then (default: serving.header_timeout_seconds "
                   "of ENV, else $TOOLKIT_HEADER_TIMEOUT, else 10).")
@click.option("--feedback-port", type=click.IntRange(1, 65535),
              help="Serve POST /v1/feedback on this port only (default: serving.feedback_port of ENV, else $TOOLKIT_FEEDBACK_PORT, "
                   "else on --port with the rest).")
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
              help="Serve only a model signed with this key (default: the keys ENV trusts, else $TOOLKIT_MODEL_PUBLIC_KEYS).")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Server processes sharing the port (default: serving.workers of ENV, from its CPU limit, else $TOOLKIT_WORKERS, "
                   "else 1).")
@click.option("--fault-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True,
              help="Tests only, loopback only: inject failures and latency from this JSON file (serve/faults.py).")
def serve(model_dir: Path, env: str | None, host: str | None, port: int | None, max_batch_size: int | None,
          max_body_bytes: int | None, header_timeout: int | None, feedback_port: int | None, public_key: Path | None,
          workers: int | None, fault_file: Path | None) -> None:
    """Serve a model over HTTP: POST /v1/predict, GET /healthz /readyz /metrics /docs.

    The artifact's checksums and signature are verified before the server starts. In the serving image the
    settings come from TOOLKIT_* environment variables (a ConfigMap on Kubernetes; toolkit/serving.py names them)."""
    import os
    import shutil
    import tempfile

    from toolkit.serving import ServingSettings

    if env:
        from toolkit.aws import emulator_environment
        from toolkit.config import load_environment

        config = load_environment(env)
        secret = None
        if config.aws.endpoint_url:  # an emulated environment's credentials live in this checkout (made on first use)
            from toolkit.context import Context
            from toolkit.feedback_tokens import ensure_local_credentials

            secret = ensure_local_credentials(Context.load(env)).dumps()
        settings = ServingSettings.from_config(config, host="127.0.0.1", feedback_secret=secret)
        os.environ.update(emulator_environment(config))  # an emulated environment's store is the local moto's S3
    else:
        settings = ServingSettings.from_environ()
    settings = settings.replace(host=host, port=port, max_batch_size=max_batch_size, max_body_bytes=max_body_bytes,
                                header_timeout=header_timeout, workers=workers, feedback_port=feedback_port)
    metrics_dir = None
    if settings.workers > 1:  # before prometheus_client is imported: the workers' metrics are summed (serve/metrics.py)
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="toolkit-metrics-")
    from toolkit.serve.app import create_app
    from toolkit.serve.server import run
    from toolkit.signing_keys import chosen_keys

    faults = None
    if fault_file is not None:
        from toolkit.serve.faults import FaultSwitch

        faults = FaultSwitch(fault_file, settings.host)
    app = create_app(model_dir, settings, trusted_keys=chosen_keys(public_key, env), faults=faults)
    feedback_at = f", feedback on port {settings.feedback_port}" if settings.feedback_port and settings.loop is not None else ""
    announcement = (f"serving model {app.state.model.version} (signed by the key of {app.state.signed_by}) on "
                    f"http://{settings.host}:{settings.port}{feedback_at}" + (f" with {settings.workers} workers" if settings.workers > 1 else ""))
    try:
        run(app, settings.host, settings.port, header_timeout=settings.header_timeout, workers=settings.workers,
            body_timeout=settings.body_timeout, feedback_port=settings.feedback_port if settings.loop is not None else None,
            announce=lambda: echo_err(announcement))
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


COMMANDS = [serve]
