"""The server's side of the feedback loop: prediction ids, ground truth, drift, and the prediction log
shipped to a real moto S3, which keeps predictions working when the store goes away."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient

from conftest import HEART, REPO, SERVICES, bearer, feedback_credentials, free_port, wait_ready, wait_until
from toolkit.config import load_environment
from toolkit.ml.table import read_csv
from toolkit.paths import ProjectPaths
from toolkit.serve.app import create_app
from toolkit.serve.log_format import records as log_records


def heart_records(n: int, shift: dict | None = None) -> list[dict]:
    records = [{k: v for k, v in r.items() if k != "num"} for r in read_csv(HEART).records(range(n))]
    for record in records:
        for name, delta in (shift or {}).items():
            record[name] = None if record[name] is None else record[name] + delta
    return records


@pytest.fixture(scope="module")
def client(model_dir):
    config = load_environment("local").feedback.model_copy(update={"drift_window": 200})
    secret, tokens = feedback_credentials("tester")
    app = create_app(model_dir, max_batch_size=300, env="local", feedback=config, prediction_log_bucket=None, feedback_secret=secret)
    with TestClient(app, headers=bearer(tokens["tester"])) as client:
        yield client


def _metric(client, prefix: str) -> dict[str, float]:
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
            if line.startswith(prefix)}


def test_every_prediction_carries_an_id_that_feedback_takes(client):
    predictions = client.post("/v1/predict", json={"records": heart_records(4)}).json()["predictions"]
    ids = [p["prediction_id"] for p in predictions]
    assert len(set(ids)) == 4
    labels = [p["label"] for p in predictions]
    answer = client.post("/v1/feedback", json={"feedback": [{"prediction_id": ids[0], "label": labels[0]},
                                                            {"prediction_id": ids[1], "label": "1" if labels[1] == "0" else "0"}]})
    assert answer.status_code == 200 and answer.json() == {"accepted": 2, "correct": 1}
    single = client.post("/v1/feedback", json={"prediction_id": ids[2], "label": int(labels[2])})
    assert single.status_code == 200 and single.json() == {"accepted": 1, "correct": 1}
    counted = _metric(client, "toolkit_feedback_total")
    assert counted['toolkit_feedback_total{outcome="correct"}'] >= 2 and counted['toolkit_feedback_total{outcome="wrong"}'] >= 1


def test_unknown_ids_and_labels_that_are_not_classes_are_named(client):
    [prediction] = client.post("/v1/predict", json={"records": heart_records(1)}).json()["predictions"]
    forged = prediction["prediction_id"][:-1] + ("0" if prediction["prediction_id"][-1] != "0" else "1")
    answer = client.post("/v1/feedback", json={"feedback": [
        {"prediction_id": "nonsense", "label": "1"}, {"prediction_id": forged, "label": "1"},
        {"prediction_id": prediction["prediction_id"], "label": "maybe"}]})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert [d["loc"] for d in detail] == [["body", "feedback", 0, "prediction_id"], ["body", "feedback", 1, "prediction_id"],
                                          ["body", "feedback", 2, "label"]]
    assert "unknown prediction id 'nonsense'" in detail[0]["msg"] and "'maybe' is not a class of this model" in detail[2]["msg"]
    assert client.post("/v1/feedback", json={}).status_code == 422
    assert client.post("/v1/feedback", json={"prediction_id": prediction["prediction_id"]}).status_code == 422


def test_drifted_inputs_raise_the_feature_psi_and_normal_inputs_do_not(client):
    client.post("/v1/predict", json={"records": heart_records(200)})
    normal = _metric(client, "toolkit_feature_psi")
    assert normal['toolkit_feature_psi{feature="age"}'] < 0.2, normal
    client.post("/v1/predict", json={"records": heart_records(200, shift={"age": 30, "chol": 150})})
    drifted = _metric(client, "toolkit_feature_psi")
    assert drifted['toolkit_feature_psi{feature="age"}'] > 1.0 and drifted['toolkit_feature_psi{feature="chol"}'] > 0.5, drifted
    assert drifted['toolkit_feature_psi{feature="sex"}'] < 0.2  # not shifted
    assert _metric(client, "toolkit_drift_window_records")["toolkit_drift_window_records"] == 200


# ---------------------------------------------------------------- the prediction log on a real S3 (moto)


@pytest.fixture
def store(tmp_path):
    from toolkit.aws import client as aws_client
    from toolkit.local.moto import start_moto, stop_moto

    paths = ProjectPaths(tmp_path / "moto")
    port = free_port()
    config = load_environment("local")
    config = config.model_copy(update={"aws": config.aws.model_copy(update={"endpoint_url": f"http://127.0.0.1:{port}"})})

    def up():
        start_moto(paths, config.aws.endpoint_url)
        aws_client("s3", config).create_bucket(Bucket=config.artifact_store.bucket)

    up()
    yield config, up, lambda: stop_moto(paths), lambda: aws_client("s3", config)
    stop_moto(paths)


@pytest.fixture
def server(store, model_dir, tmp_path):
    """`toolkit serve` as the serving container runs it: the feedback loop configured by environment variables."""
    from toolkit.aws import emulator_environment

    config = store[0]
    feedback = config.feedback.model_copy(update={"queue_size": 100, "batch_size": 20, "flush_seconds": 0.5})
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    secret, tokens = feedback_credentials("tester")
    env = {**os.environ, **emulator_environment(config), "TOOLKIT_ENV": "local", "TOOLKIT_FEEDBACK": feedback.model_dump_json(),
           "TOOLKIT_PREDICTION_LOG_BUCKET": config.artifact_store.bucket, "TOOLKIT_FEEDBACK_SECRET": secret}
    process = subprocess.Popen([str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(model_dir), "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    _TOKENS[url] = tokens["tester"]
    try:
        wait_ready(url + "/readyz")
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


_TOKENS: dict[str, str] = {}  # the labeller token of each server the tests start


def _post(url: str, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json", **bearer(_TOKENS[url])})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _objects(s3, bucket: str, prefix: str) -> list[dict]:
    records = []
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        records += [r for line in gzip.decompress(body).decode().splitlines() for r in log_records(json.loads(line))]
    return records


@SERVICES
def test_predictions_and_ground_truth_are_shipped_to_the_store(store, server):
    config, _, _, s3 = store
    bucket = config.artifact_store.bucket
    status, answer = _post(server, "/v1/predict", {"records": heart_records(5)})
    assert status == 200
    first = answer["predictions"][0]
    assert _post(server, "/v1/feedback", {"prediction_id": first["prediction_id"], "label": first["label"]})[0] == 200
    logged = wait_until("predictions shipped", lambda: _objects(s3(), bucket, "predictions/local/"))
    assert [r["prediction_id"] for r in logged] == [p["prediction_id"] for p in answer["predictions"]]
    assert logged[0]["features"] == heart_records(1)[0] and logged[0]["model_version"] == answer["model_version"]
    assert logged[0]["label"] == first["label"] and set(logged[0]["probabilities"]) == {"0", "1"}
    truth = wait_until("feedback shipped", lambda: _objects(s3(), bucket, "feedback/local/"))
    assert truth[0]["prediction_id"] == first["prediction_id"] and truth[0]["label"] == truth[0]["predicted"] == first["label"]
    assert truth[0]["labeller"] == "tester"
    key = s3().list_objects_v2(Bucket=bucket, Prefix="predictions/local/")["Contents"][0]["Key"]
    assert key.startswith(f"predictions/local/{time.strftime('%Y-%m-%d', time.gmtime())}/") and key.endswith(".jsonl.gz")


@SERVICES
def test_predictions_keep_working_while_the_store_is_down_and_shipping_resumes(store, server):
    """Stop moto in the middle of traffic: no prediction fails, the drop counter rises (the queue holds
    100 records), and once S3 is back the log is shipped again."""
    config, up, down, s3 = store
    statuses: list[int] = []
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            statuses.append(_post(server, "/v1/predict", {"records": heart_records(3)})[0])
            time.sleep(0.01)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        time.sleep(1.0)
        down()
        wait_until("records dropped while the store is down", lambda: _metrics(server).get(
            'toolkit_prediction_log_records_total{kind="predictions",outcome="dropped"}', 0) > 0, timeout=30)
        up()  # moto comes back empty: the bucket is recreated, as `make deploy ENV=local` would
        shipped_before = _metrics(server)['toolkit_prediction_log_records_total{kind="predictions",outcome="shipped"}']
        wait_until("shipping resumed", lambda: _metrics(server)['toolkit_prediction_log_records_total{kind="predictions",outcome="shipped"}']
              > shipped_before, timeout=60)
    finally:
        stop.set()
        worker.join()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    # No error count is asserted: under load the one upload in flight can sit in botocore's retries
    # for the whole outage and then succeed, so only the drops (above) are certain.
    assert _objects(s3(), config.artifact_store.bucket, "predictions/local/")


def _metrics(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("toolkit_prediction_log")}
