"""`toolkit serve`: the inference server on uvicorn."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli.options import MODEL_OPTION, echo_err


@click.command()
@MODEL_OPTION
@click.option("--env", "env", metavar="ENV", help="Take the batch and body limits (and port) from ENV's serving settings.")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="TOOLKIT_HOST", help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), envvar="TOOLKIT_PORT",
              help="Port (default: serving.port of ENV, else 8080).")
@click.option("--max-batch-size", type=click.IntRange(min=1), envvar="TOOLKIT_MAX_BATCH_SIZE",
              help="Records per request (default: serving.max_batch_size of ENV, else 256).")
@click.option("--max-body-bytes", type=click.IntRange(min=1024), envvar="TOOLKIT_MAX_BODY_BYTES",
              help="Request body limit (default: serving.max_body_bytes of ENV, else 1 MiB).")
@click.option("--header-timeout", type=click.IntRange(1, 300), envvar="TOOLKIT_HEADER_TIMEOUT", metavar="SECONDS",
              help="Close a connection whose request head is not complete by then (default: serving.header_timeout_seconds "
                   "of ENV, else 10).")
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path), metavar="PEM",
              help="Serve only a model signed with this key (default: $TOOLKIT_MODEL_PUBLIC_KEYS, the keys ENV trusts, "
                   "or those of the environment the model was trained for).")
@click.option("--workers", type=click.IntRange(1, 64), envvar="TOOLKIT_WORKERS",
              help="Server processes sharing the port (default: serving.workers of ENV, from its CPU limit, else 1).")
@click.option("--fault-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True,
              help="Tests only, loopback only: inject failures and latency from this JSON file (serve/faults.py).")
def serve(model_dir: Path, env: str | None, host: str, port: int | None, max_batch_size: int | None,
          max_body_bytes: int | None, header_timeout: int | None, public_key: Path | None, workers: int | None,
          fault_file: Path | None) -> None:
    """Serve a model over HTTP: POST /v1/predict, GET /healthz /readyz /metrics /docs.

    The artifact's checksums and signature are verified before the server starts. In the serving image the
    settings come from TOOLKIT_* environment variables (a ConfigMap on Kubernetes)."""
    import os
    import shutil
    import tempfile

    if env and workers is None:
        from toolkit.config import load_environment

        workers = load_environment(env).serving.worker_count
    metrics_dir = None
    if (workers or 1) > 1:  # before prometheus_client is imported: the workers' metrics are summed (serve/metrics.py)
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="toolkit-metrics-")
    from toolkit.serve.app import create_app
    from toolkit.serve.loop import LoopSettings
    from toolkit.serve.server import run

    limits = {}
    loop = LoopSettings.from_environment()  # the serving image: TOOLKIT_ENV, TOOLKIT_FEEDBACK, ...
    if env:
        from toolkit.config import load_environment

        config = load_environment(env)
        serving = config.serving
        limits = {"max_batch_size": serving.max_batch_size, "max_body_bytes": serving.max_body_bytes}
        port = port or serving.port
        header_timeout = header_timeout or serving.header_timeout_seconds
        loop = LoopSettings(env, config.feedback, config.artifact_store.bucket)
        if config.aws.endpoint_url:  # the local environment's store is moto's S3
            from toolkit.aws import emulator_environment

            os.environ.update(emulator_environment(config))
    limits.update({k: v for k, v in {"max_batch_size": max_batch_size, "max_body_bytes": max_body_bytes}.items() if v})
    faults = None
    if fault_file is not None:
        from toolkit.serve.faults import FaultSwitch

        faults = FaultSwitch(fault_file, host)
    from toolkit.ml.signing_keys import keys_for_model

    keys = keys_for_model(model_dir, public_key, env)
    app = create_app(model_dir, **limits, faults=faults, loop=loop, public_keys=keys)
    echo_err(f"serving model {app.state.model.version} (signed by the key of {app.state.signed_by}) on http://{host}:{port or 8080}"
             + (f" with {workers} workers" if (workers or 1) > 1 else ""))
    try:
        run(app, host, port or 8080, header_timeout=header_timeout or 10, workers=workers or 1)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


COMMANDS = [serve]
