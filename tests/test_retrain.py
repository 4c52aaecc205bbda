"""The champion/challenger gate on real parts: a real `toolkit serve` of the champion, predictions and
ground truth sent to it, its prediction log and the labels read back from a real moto S3, a
challenger trained on them. Flipped labels make a challenger that is refused; honest ones pass."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request

import pytest

from conftest import HEART, REPO, SERVICES, bearer, feedback_credentials, free_port, train_small_model, wait_ready
from kube_emulator import EmulatorThread, run_toolkit_job, write_kubeconfig
from toolkit.context import Context
from toolkit.loop.retrain import record_decision, retrain
from toolkit.ml.table import read_csv
from toolkit.paths import ProjectPaths

pytestmark = SERVICES  # they start services of their own: not in `make test-fast`


@pytest.fixture
def loop(tmp_path):
    """moto with the artifact store's bucket, a champion served by `toolkit serve` with the feedback loop on."""
    from toolkit.aws import client as aws_client
    from toolkit.aws import emulator_environment
    from toolkit.local.moto import start_moto, stop_moto

    paths = ProjectPaths(tmp_path / "project")
    paths.root.mkdir()
    (paths.root / "data").symlink_to(REPO / "data")  # the base dataset, as in a checkout
    (paths.state / "signing").symlink_to(REPO / ".local" / "signing")  # the checkout's key, which signed the champion
    ctx = Context.load("local", REPO)
    config = ctx.config.model_copy(update={"aws": ctx.config.aws.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"}),
                                           "feedback": ctx.config.feedback.model_copy(update={"flush_seconds": 0.2})})
    ctx = Context(config, paths)
    start_moto(paths, config.aws.endpoint_url)
    aws_client("s3", config).create_bucket(Bucket=config.artifact_store.bucket)
    # the champion is trained on the same split as the challenger will be (the config's seed): the gate's test split is unseen by both
    champion = train_small_model(tmp_path / "champion", seed=config.training.seed)
    port = free_port()
    secret, tokens = feedback_credentials("local", "mallory")  # `local` is trusted (environments/local.yaml), mallory is not
    env = {**os.environ, **emulator_environment(config), "TOOLKIT_ENV": "local", "TOOLKIT_FEEDBACK": config.feedback.model_dump_json(),
           "TOOLKIT_PREDICTION_LOG_BUCKET": config.artifact_store.bucket, "TOOLKIT_FEEDBACK_SECRET": secret}
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(champion), "--port", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        _TOKENS.update(tokens)
        yield ctx, champion, f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        server.wait(10)
        stop_moto(paths)


_TOKENS: dict[str, str] = {}  # labeller: token, of the server the fixture started


def _post(url: str, body: dict, labeller: str = "local") -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json", **bearer(_TOKENS[labeller])})
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def _send_labelled_traffic(ctx: Context, url: str, flip: bool, labeller: str = "local") -> int:
    """Every row of the dataset outside the test split to /v1/predict, then its true class (or the other
    one) to /v1/feedback. The test split stays unseen: it is where the gate judges both models."""
    from toolkit.ml.data import stratified_split
    from toolkit.ml.train import DatasetChoice

    settings = ctx.config.training
    dataset = DatasetChoice.from_config(settings, root=ctx.root).load()
    _, _, test = stratified_split(dataset.y, settings.validation_fraction, settings.test_fraction, settings.seed)
    assert dataset.dropped_rows == 0  # row i of the file is row i of the dataset
    unseen = set(test.tolist())
    records = [r for i, r in enumerate(read_csv(HEART).records()) if i not in unseen]
    truth = ["1" if r["num"] > 0 else "0" for r in records]
    for start in range(0, len(records), 100):
        batch = [{k: v for k, v in r.items() if k != "num"} for r in records[start:start + 100]]
        predictions = _post(url + "/v1/predict", {"records": batch})["predictions"]
        labels = [("0" if t == "1" else "1") if flip else t for t in truth[start:start + 100]]
        _post(url + "/v1/feedback", {"feedback": [{"prediction_id": p["prediction_id"], "label": label}
                                                  for p, label in zip(predictions, labels, strict=True)]}, labeller)
    return len(records)


def _stop_and_flush(server) -> None:
    server.terminate()  # graceful: the shippers flush what is queued
    server.wait(10)


def test_a_challenger_trained_on_flipped_labels_is_refused(loop):
    ctx, champion, url, server = loop
    sent = _send_labelled_traffic(ctx, url, flip=True)
    _stop_and_flush(server)
    decision = retrain(ctx, champion, ctx.paths.artifacts("local") / "challengers", on_line=lambda line: None)
    assert not decision.release, decision.reason
    assert "worse than the champion on the test split" in decision.reason or "below the quality floor" in decision.reason
    record = decision.record
    assert record["data"]["feedback"]["rows"] == sent and record["data"]["feedback"]["holdout"] > 0
    assert record["champion"]["test_split"]["accuracy"] > record["challenger"]["test_split"]["accuracy"]
    url_written = record_decision(ctx, {**record, "dry_run": True, "released": None})
    from toolkit.aws import client

    bucket, key = url_written[5:].split("/", 1)
    stored = json.loads(client("s3", ctx.config).get_object(Bucket=bucket, Key=key)["Body"].read())
    assert stored["decision"] == "keep" and stored["reason"] == decision.reason
    assert (ctx.paths.artifacts("local") / "latest").exists() is False  # the refused challenger is not the environment's model


def test_one_untrusted_labellers_crafted_rows_do_not_steer_a_release(loop):
    """Issue 25: a client with a token of its own labels its own predictions as it likes, three times over
    the dataset. Its rows are capped at max_labeller_share of what the challenger trains on, counted in
    the decision record, and with no trusted labeller's held-out feedback to judge on, nothing is released."""
    ctx, champion, url, server = loop
    sent = sum(_send_labelled_traffic(ctx, url, flip=True, labeller="mallory") for _ in range(3))
    _stop_and_flush(server)
    decision = retrain(ctx, champion, ctx.paths.artifacts("local") / "challengers", on_line=lambda line: None)
    assert not decision.release and "untrusted labellers (mallory)" in decision.reason, decision.reason
    mallory = decision.record["data"]["feedback"]["labellers"]["mallory"]
    assert mallory["rows"] == sent and mallory["trusted"] is False and mallory["holdout"] == 0
    base_rows, share = decision.record["data"]["base"]["rows"], ctx.config.feedback.retrain.max_labeller_share
    assert 0 < mallory["trained"] <= share * (base_rows + mallory["trained"]) < sent / 4, mallory  # a bounded part, not 3x the data


def test_a_challenger_on_honest_labels_passes_the_gate(loop):
    ctx, champion, url, server = loop
    _send_labelled_traffic(ctx, url, flip=False)
    _stop_and_flush(server)
    decision = retrain(ctx, champion, ctx.paths.artifacts("local") / "challengers", on_line=lambda line: None)
    assert decision.release, decision.reason
    challenger, reference = decision.record["challenger"], decision.record["champion"]
    assert challenger["test_split"]["accuracy"] >= reference["test_split"]["accuracy"] - ctx.config.feedback.retrain.tolerance
    assert challenger["feedback_holdout"]["n"] == decision.record["data"]["feedback"]["holdout"]


def test_remote_retraining_trains_the_challenger_in_a_job_from_the_feedback_snapshot(loop, local, tmp_path):
    """`toolkit retrain --remote` against the Kubernetes emulator, whose Job runner really runs the
    Job's command (`toolkit train-challenger`) with the environment file from its ConfigMap and the
    Job's environment: the challenger comes back through the artifact store and is judged here. The
    Job's image is a signed training image in the registry of `local` (the same account's login)."""
    import yaml
    from signed_images import signed_training_release

    from toolkit.aws import client
    from toolkit.delivery.runtime import open_runtime
    from toolkit.images.release import Release, ReleaseRecords
    from toolkit.loop.remote import remote_trainer
    from toolkit.signing_keys import PRIVATE_KEY_FILE_ENV, local_key_files
    from toolkit.workloads.kube import Kube

    ctx, champion, url, server = loop
    ctx = Context(ctx.config.model_copy(update={"registry": ctx.config.registry.model_copy(update={"endpoint": local.registry.endpoint})}),
                  ctx.paths)
    sent = _send_labelled_traffic(ctx, url, flip=False)
    _stop_and_flush(server)
    ctx.paths.environment_file("local").parent.mkdir()
    ctx.paths.environment_file("local").write_text(yaml.safe_dump(ctx.config.model_dump(mode="json"), sort_keys=False))
    trainer = signed_training_release(ctx.config, ctx.paths)
    ReleaseRecords(ctx.paths, "local").save_push(Release("registry.test/ml@sha256:" + "a" * 64, "v1"), training_image=trainer.image)
    commands = []

    def run_job(job: dict) -> tuple[bool, str, str]:
        commands.append(job["spec"]["template"]["spec"]["containers"][0]["command"])
        configmap = kube.get("ConfigMap", "toolkit-environment", job["metadata"]["namespace"])
        # the emulated environment's signing key, as a pod would have it mounted (a cloud one reads its secret)
        return run_toolkit_job(job, configmap["data"], tmp_path / "job-root", {PRIVATE_KEY_FILE_ENV: str(local_key_files(ctx.paths)[0])})

    lines = []
    with EmulatorThread() as emulator:
        emulator.emulator.job_runner = run_job
        kubeconfig = write_kubeconfig(tmp_path, emulator.url)
        target = open_runtime(ctx, str(kubeconfig), None)
        kube: Kube = target.kube
        out = ctx.paths.artifacts("local") / "challengers"
        decision = retrain(ctx, champion, out, lines.append, trainer=remote_trainer(ctx, target, out, 300, lines.append))
    assert [c[:2] for c in commands] == [["toolkit", "train-challenger"]], lines
    assert decision.release, decision.reason
    assert decision.record["data"]["feedback"]["rows"] == sent
    version = decision.record["challenger"]["version"]
    assert (out / version / "manifest.json").exists()  # downloaded and verified
    keys = [o["Key"] for o in client("s3", ctx.config).list_objects_v2(Bucket=ctx.config.artifact_store.bucket,
                                                                       Prefix="retrain/local/")["Contents"]]
    assert any(k.endswith("/feedback.jsonl.gz") for k in keys) and any(k.endswith(f"/{version}/manifest.json") for k in keys)
    assert "training image signed by local, SBOM attested by local" in lines
    assert any("training a challenger on heart-cleveland.csv and" in line for line in lines)  # the Job's log, streamed
    # the pod's termination message: where the challenger trained
    assert any(re.search(r"training Job retrain-local-\S+ completed in [\d.]+ s on the CPU: CuPy is not installed", line)
               for line in lines), lines
