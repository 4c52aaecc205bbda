"""The feedback loop end to end on real parts: the champion released to the local runtime (Docker,
the registry, moto S3), the local Prometheus, Alertmanager and alert receiver. Drifted traffic with
true labels raises the PSI metric, InputDriftDetected fires and reaches the receiver, which starts
the retraining; the gate decides, the decision record lands in the artifact store, and the released
challenger serves. A second retraining on flipped labels is refused and the challenger keeps serving.
The seconds of every step are printed (pytest -s) and written to the test's directory."""

from __future__ import annotations

import json
import shutil
import sys

import docker
import pytest

from conftest import REPO, free_port, train_small_model
from toolkit.aws import client as aws_client
from toolkit.context import Context
from toolkit.delivery.release import adopt, release_model
from toolkit.delivery.runtime import open_runtime
from toolkit.feedback_tokens import local_token
from toolkit.local.monitoring import start_monitoring, stop_monitoring
from toolkit.loop.command import retrain_and_release
from toolkit.loop.drill import drifted_records, run_drill, send_labelled, shipped, wait_shipped
from toolkit.paths import ProjectPaths
from toolkit.workloads.local_runtime import container_name, service_url
from toolkit.workloads.smoke import http_json

ENV = "loop-test"


@pytest.fixture(scope="module")
def loop(engine, local_ctx, tmp_path_factory):
    """The local environment as `loop-test` on ports of its own: a champion released and serving,
    the monitoring (state in a directory of its own) retraining through tests/retrain_with_config.py."""
    base = local_ctx.config
    monitoring, feedback = base.monitoring, base.feedback
    config = base.model_copy(update={
        "name": ENV,
        "serving": base.serving.model_copy(update={"port": free_port()}),
        "workloads": base.workloads.model_copy(update={"rollout_timeout_seconds": 60}),
        "monitoring": monitoring.model_copy(update={"local": monitoring.local.model_copy(update={
            "prometheus_port": free_port(), "alertmanager_port": free_port(), "receiver_port": free_port()})}),
        "feedback": feedback.model_copy(update={"flush_seconds": 0.5}),
    })
    ctx = local_ctx.with_config(config)
    state = ProjectPaths(tmp_path_factory.mktemp("loop-e2e"))
    config_file = state.root / "config.json"
    config_file.write_text(config.model_dump_json())
    aws_client("s3", config).create_bucket(Bucket=config.artifact_store.bucket)
    target = open_runtime(ctx)
    # the champion: trained on the environment's split (its test split unseen), released like `make release`
    champion = adopt(ctx, train_small_model(state.root / "champion", seed=config.training.seed))
    release_model(ctx, target, champion, on_line=lambda line: None)
    start_monitoring(Context(config, state), retrain_command=[sys.executable, str(REPO / "tests" / "retrain_with_config.py"),
                                                               str(config_file), str(REPO)])
    try:
        yield ctx, target, state
    finally:
        stop_monitoring(state)
        for suffix in ("", "-candidate"):
            try:
                engine.containers.get(container_name(ENV) + suffix).remove(force=True)
            except docker.errors.NotFound:
                pass
        shutil.rmtree(ctx.paths.artifacts(ENV), ignore_errors=True)
        for record in ("releases", "build", "push", "decision"):
            ctx.paths.record(f"{record}-{ENV}").unlink(missing_ok=True)


def test_drift_alert_retrains_and_the_gate_releases_the_challenger(loop):
    ctx, target, state = loop
    champion = http_json(f"{service_url(ctx.config)}/v1/model")["model_version"]
    steps = run_drill(ctx, target, on_step=lambda s: print(f"{s.seconds:7.1f} s  {s.name:<17} {s.detail}"), timeout=600,
                      monitoring=state)
    (state.root / "steps.json").write_text(json.dumps([vars(s) for s in steps], indent=2))
    names = [s.name for s in steps]
    assert names == ["serving", "traffic", "drift", "alert", "notified", "retrain started", "retrain finished", "decision", "serving"]
    decision = json.loads((ctx.paths.record(f"decision-{ENV}")).read_text())
    assert decision["decision"] == "release", decision["reason"]
    assert decision["champion"]["version"] == champion and decision["data"]["feedback"]["rows"] > 0
    bucket, key = decision["url"][5:].split("/", 1)
    stored = json.loads(aws_client("s3", ctx.config).get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["challenger"]["version"] == decision["challenger"]["version"] and stored["released"]
    assert http_json(f"{service_url(ctx.config)}/v1/model")["model_version"] == decision["challenger"]["version"]


def test_a_challenger_on_flipped_labels_is_refused_and_the_served_model_stays(loop):
    ctx, target, _ = loop
    url = service_url(ctx.config)
    serving = http_json(f"{url}/v1/model")["model_version"]
    records, labels = drifted_records(ctx)
    flipped = ["0" if label == "1" else "1" for label in labels]
    before = shipped(url, "feedback")
    wait_shipped(url, before, send_labelled(url, records, flipped, 600, local_token(ctx)))
    record = retrain_and_release(ctx, target, dry_run=False, on_line=lambda line: None)
    assert record["decision"] == "keep" and record["released"] is None, record["reason"]
    assert record["champion"]["version"] == serving
    assert http_json(f"{url}/v1/model")["model_version"] == serving
