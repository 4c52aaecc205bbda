"""The inference server in-process: predictions equal `toolkit predict`, every bad request is a
named 4xx, metrics count, and schemathesis finds no 5xx from the server's own OpenAPI schema."""

from __future__ import annotations

import json
import shutil

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from reference_model import reference_predict

from conftest import HEART, SIGNING_KEY
from toolkit.config import load_environment
from toolkit.errors import ArtifactError
from toolkit.ml.artifacts import load_artifact
from toolkit.ml.predict import predict_records
from toolkit.ml.signing import sign_artifact
from toolkit.ml.table import read_csv
from toolkit.ml.train import DatasetChoice, train_and_save
from toolkit.serve.app import create_app

MAX_BATCH = 8
MAX_BODY = 4096


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    settings_ = load_environment("local").training.model_copy(update={"epochs": 20})
    out = tmp_path_factory.mktemp("serve-artifacts")
    artifact = train_and_save(DatasetChoice.from_config(settings_), settings_, out, env="test").artifact_dir
    sign_artifact(artifact, SIGNING_KEY.read_bytes())  # the servers the tests start trust this key (conftest)
    return artifact


@pytest.fixture(scope="module")
def app(model_dir):
    return create_app(model_dir, max_batch_size=MAX_BATCH, max_body_bytes=MAX_BODY)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def heart_records(n: int) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "num"} for record in read_csv(HEART).records(range(n))]


def test_predictions_match_an_independent_reading_of_the_saved_model(client, model_dir):
    """The answer is what the saved weights and preprocessing compute (tests/reference_model.py shares no
    code with the toolkit), and exactly what `toolkit predict` gives for the same rows."""
    records = heart_records(MAX_BATCH)
    response = client.post("/v1/predict", json={"records": records})
    assert response.status_code == 200
    body = response.json()
    model = load_artifact(model_dir)
    assert body["model_version"] == model.version
    reference = reference_predict(model_dir, records)
    assert [p["label"] for p in body["predictions"]] == [p["label"] for p in reference]
    for served, expected in zip(body["predictions"], reference, strict=True):
        for name, probability in expected["probabilities"].items():
            assert served["probabilities"][name] == pytest.approx(probability, rel=1e-5, abs=1e-6)
    columns = {f: [r[f] for r in records] for f in records[0]}
    assert body["predictions"] == predict_records(model, columns, "test")  # same floats, not just close


def test_instances_form_matches_records_form(client):
    records = heart_records(3)
    features = client.get("/v1/model").json()["features"]
    by_name = client.post("/v1/predict", json={"records": records}).json()
    by_position = client.post("/v1/predict", json={"instances": [[r[f] for f in features] for r in records]}).json()
    assert by_name == by_position


def _record(**changes):
    record = heart_records(1)[0]
    record.update(changes)
    return {k: v for k, v in record.items() if v != "DROP"}


@pytest.mark.parametrize(
    "body, status, loc, message",
    [
        ({"records": [_record(age="DROP")]}, 422, ["body", "records", 0], "missing feature(s) ['age']"),
        ({"records": [_record(colour=1.0)]}, 422, ["body", "records", 0], "unknown feature(s) ['colour']"),
        ({"records": [_record(age="old")]}, 422, ["body", "records", 0, "age"], "expected a number or null"),
        ({"records": [_record(age=True)]}, 422, ["body", "records", 0, "age"], ""),
        ({"records": []}, 422, ["body", "records"], "empty batch"),
        ({"records": [_record()] * (MAX_BATCH + 1)}, 422, ["body", "records"], f"over the limit of {MAX_BATCH}"),
        ({"instances": [[1.0, 2.0]]}, 422, ["body", "instances", 0], "expected 13 values"),
        ({"records": [_record()], "instances": [[1.0]]}, 422, ["body"], "exactly one of"),
        ({}, 422, ["body"], "exactly one of"),
        ({"records": [_record()], "extra": 1}, 422, ["body", "extra"], ""),
        ({"records": [None]}, 422, ["body", "records", 0], ""),
        ([1, 2], 422, ["body"], ""),
    ],
)
def test_bad_requests_get_a_named_4xx(client, body, status, loc, message):
    response = client.post("/v1/predict", json=body)
    assert response.status_code == status, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][: len(loc)] == loc
    assert message in detail["msg"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(client, token):
    record = json.dumps(_record()).replace('"age": 63.0', f'"age": {token}')
    response = client.post("/v1/predict", content='{"records": [' + record + "]}", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "records", 0, "age"]


@pytest.mark.parametrize("literal", ["1e308", "-1e308", "3.5e38", "9" * 310, "-" + "1" * 400, "1" * 3500],
                         ids=["1e308", "-1e308", "3.5e38", "310 digits", "-400 digits", "3500 digits"])
def test_numbers_beyond_float32_are_a_422_naming_the_field(client, literal):
    """Issue 13 item 2: a 310-digit integer literal gave a 500 (OverflowError converting to float)."""
    record = json.dumps(_record()).replace('"chol": 233.0', f'"chol": {literal}')
    response = client.post("/v1/predict", content='{"records": [' + record + "]}", headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"][:2] == ["body", "records"] and "chol" in str(detail["loc"]) + detail["msg"], detail


def test_invalid_json_and_oversized_body(client):
    bad = client.post("/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422
    big = client.post("/v1/predict", content=b" " * (MAX_BODY + 1), headers={"content-type": "application/json"})
    assert big.status_code == 413 and "byte limit" in big.json()["detail"][0]["msg"]


def test_health_readiness_and_metrics(client, app):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["model_version"] == app.state.model.version
    before = _metric(client, 'toolkit_http_requests_total{route="/v1/predict",status="200"}')
    client.post("/v1/predict", json={"records": heart_records(2)})
    client.post("/v1/predict", json={"records": []})
    text = client.get("/metrics").text
    assert _metric(client, 'toolkit_http_requests_total{route="/v1/predict",status="200"}') == before + 1
    assert 'toolkit_http_requests_total{route="/v1/predict",status="422"}' in text
    assert "toolkit_http_request_duration_seconds_bucket" in text
    assert "toolkit_predictions_total{label=" in text
    assert f'version="{app.state.model.version}"' in text


def _metric(client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    return 0.0


def test_the_openapi_document_names_each_operation_once(client):
    document = client.get("/openapi.json").json()
    operations = [(path, method, spec.get("operationId")) for path, methods in document["paths"].items()
                  for method, spec in methods.items()]
    ids = [operation_id for _, _, operation_id in operations]
    assert len(ids) == len(set(ids)), operations
    assert ("/healthz", "get", "healthz_healthz_get") in operations and all(method != "head" for _, method, _ in operations)
    assert client.head("/healthz").status_code == 200 and client.head("/v1/model").status_code == 200


def test_corrupt_model_is_refused_at_startup(model_dir, tmp_path):
    damaged = tmp_path / "model"
    shutil.copytree(model_dir, damaged)
    (damaged / "weights.npz").write_bytes(b"\0" * 10)
    with pytest.raises(ArtifactError, match="weights.npz"):
        create_app(damaged)


@pytest.fixture(scope="module")
def openapi_schema(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # Valid and deliberately invalid requests (wrong types, missing and extra fields).
    schema.config.generation.update(modes=list(schemathesis.GenerationMode), max_examples=60, deterministic=True)
    return schema


fuzzed = schemathesis.pytest.from_fixture("openapi_schema")


@fuzzed.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_never_get_a_5xx(case):
    """schemathesis generates requests from the server's own OpenAPI schema: none may get a 5xx."""
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])


def test_fuzzing_reaches_both_the_predictor_and_the_validators(openapi_schema):
    """Guards the fuzz test above: generated bodies must hit the 200 path, not only 4xx."""
    from hypothesis import given

    operation = openapi_schema["/v1/predict"]["POST"]
    statuses: dict[str, set[int]] = {}
    def explore(mode):
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            statuses.setdefault(mode.value, set()).add(case.call().status_code)

        run()

    for mode in schemathesis.GenerationMode:
        explore(mode)
    assert 200 in statuses["positive"]
    assert statuses["negative"] and max(statuses["negative"]) < 500 and min(statuses["negative"]) >= 400
