"""Regression end to end (issue 27, item 1): a continuous label trains a regressor with the
environment file as shipped (MSE on the standardized label, plain K-fold), reports R², MAE and
RMSE, and the model answers {"value"} in the label's units from `toolkit predict`, batch scoring,
the server (both paths) and its ONNX export alike."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import orjson
import pytest
from fastapi.testclient import TestClient

from conftest import SIGNING_KEY, bearer, feedback_credentials
from toolkit.config import load_environment
from toolkit.ml.artifacts import load_artifact
from toolkit.ml.data import prepare_dataset
from toolkit.ml.nn.metrics import regression_report
from toolkit.ml.onnx_export import export_onnx
from toolkit.ml.predict import score_table
from toolkit.ml.signing import public_keys_from_pem, sign_artifact
from toolkit.ml.table import Table, read_csv
from toolkit.ml.train import DatasetChoice, train_and_save
from toolkit.serve.app import create_app
from toolkit.serve.fast_routes import PredictHandler
from toolkit.serve.metrics import ServerMetrics
from toolkit.serve.predictor import Predictor

PUBLIC_KEY = str(SIGNING_KEY.with_suffix(".pub"))


def _houses(path, rows: int = 400, seed: int = 2):
    """price = f(area, rooms, district) + noise, in thousands; some cells missing."""
    rng = np.random.default_rng(seed)
    lines = ["house,area,rooms,district,price"]
    for i in range(rows):
        area, rooms = rng.uniform(40, 200), int(rng.integers(1, 6))
        district = ["centre", "harbour", "hills"][int(rng.integers(0, 3))]
        price = 2.5 * area + 15 * rooms + {"centre": 120, "harbour": 60, "hills": 0}[district] + rng.normal(0, 20)
        cells = [f"h{i}", f"{area:.1f}", str(rooms), district, f"{price:.2f}"]
        if i % 31 == 0:
            cells[2] = ""
        lines.append(",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("regression")
    data = _houses(root / "houses.csv")
    settings = load_environment("local").training.model_copy(update={"loss": "auto", "task": "auto", "epochs": 150})
    choice = DatasetChoice.from_config(settings, path=data, label="price", categorical=["district"], drop_columns=["house"])
    result = train_and_save(choice, settings, root / "artifacts", env="test", cv_folds=3)
    sign_artifact(result.artifact_dir, SIGNING_KEY.read_bytes())
    return result, data


def test_it_learns_and_reports_regression_metrics(trained):
    result, _ = trained
    manifest = json.loads((result.artifact_dir / "manifest.json").read_text())
    assert manifest["task"] == "regression" and manifest["classes"] == [] and manifest["architecture"]["output"] == "identity"
    assert set(result.metrics["test"]) == {"n", "r2", "mae", "rmse"} and result.metrics["test"]["r2"] > 0.9
    assert result.metrics["cv"]["folds"] == 3 and len(result.metrics["cv"]["rmse"]["folds"]) == 3
    assert (result.artifact_dir / "predicted_vs_true.png").read_bytes()[:4] == b"\x89PNG"
    assert result.data_report["target"]["min"] < result.data_report["target"]["max"]
    assert result.task_note.startswith("regression (the label 'price' looks continuous")


def test_the_metrics_are_what_they_say():
    y, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.5, 5.0])
    report = regression_report(y, predicted)
    assert report["mae"] == pytest.approx(0.5) and report["rmse"] == pytest.approx(np.sqrt(1.5 / 4))
    assert report["r2"] == pytest.approx(1 - 1.5 / 5.0)
    assert regression_report(y, np.full(4, y.mean()))["r2"] == pytest.approx(0.0)


def test_evaluate_predict_and_batch_scoring_agree(trained, run_cli, tmp_path):
    result, data = trained
    evaluation = json.loads(run_cli("evaluate", "--model", result.artifact_dir, "--public-key", PUBLIC_KEY, "--data", data,
                                    "--json").stdout)
    assert evaluation["split"] == "test" and evaluation["r2"] == pytest.approx(result.metrics["test"]["r2"], abs=1e-12)
    record = {"area": 120.0, "rooms": 3, "district": "centre"}
    answer = json.loads(run_cli("predict", "--model", result.artifact_dir, "--public-key", PUBLIC_KEY, "--json",
                                input=json.dumps([record])).stdout)
    value = answer["predictions"][0]["value"]
    assert 2.5 * 120 + 45 + 120 - 60 < value < 2.5 * 120 + 45 + 120 + 60  # near the rule that made the data
    out = tmp_path / "scored.csv"
    shown = run_cli("predict", "--model", result.artifact_dir, "--public-key", PUBLIC_KEY, "--input", data, "--output", out,
                    "--keep", "house")
    assert shown.exit_code == 0, shown.output
    header, first = out.read_text().splitlines()[:2]
    model = load_artifact(result.artifact_dir)
    assert header == "house,predicted"
    assert float(first.split(",")[1]) == pytest.approx(score_table(model, read_csv(data)).probabilities[0, 0], rel=1e-7)


def test_the_server_answers_values_on_both_paths_and_counts_them(trained):
    result, _ = trained
    model = load_artifact(result.artifact_dir)
    client = TestClient(create_app(result.artifact_dir, trusted_keys=_keys()))
    record = {"area": 80.0, "rooms": 2, "district": "hills"}
    served = client.post("/v1/predict", json={"records": [record, {**record, "rooms": None}]})
    assert served.status_code == 200, served.text
    # One record on every path: BLAS may round a 1-row product differently from a 2-row one (float32).
    values = [p["value"] for p in client.post("/v1/predict", json={"records": [record]}).json()["predictions"]]
    assert values[0] == pytest.approx(served.json()["predictions"][0]["value"], rel=1e-6)
    assert values[0] == score_table(model, Table.from_columns({k: [v] for k, v in record.items()}, "t")).predictions[0]["value"]
    fast = PredictHandler(Predictor(model, ServerMetrics(model), None), 64)  # the direct path, as the protocol calls it
    status, body = fast(orjson.dumps({"records": [record]}))
    assert status == 200 and orjson.loads(body)["predictions"] == [{"value": values[0]}]
    assert client.get("/v1/model").json()["task"] == "regression"
    assert "toolkit_predicted_value_count 3.0" in client.get("/metrics").text


def _keys():
    return public_keys_from_pem("test", SIGNING_KEY.with_suffix(".pub").read_bytes())


def test_the_onnx_export_gives_the_same_values(trained, tmp_path):
    result, data = trained
    model = load_artifact(result.artifact_dir)
    out = tmp_path / "model.onnx"
    assert export_onnx(model, out)["outputs"] == ["value"]
    table = read_csv(data)
    feeds = {spec["name"]: table.numbers(spec["name"])[:, None] for spec in model.preprocessor.numeric}
    codes, keys = table.column("district").categories()
    feeds["district"] = np.array([keys[c] if c >= 0 else "" for c in codes], dtype=object)[:, None]
    (values,) = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["value"], feeds)
    # float32 sums in another order, then · std: equal to 1e-5 of the value (house prices in the hundreds)
    np.testing.assert_allclose(values, score_table(model, table).probabilities, rtol=1e-5)


def test_the_feedback_loop_takes_a_regressors_numeric_labels(trained):
    """Ids carry the predicted value (MAC'd), labels are numbers, each label's absolute error is
    observed (the online MAE), a second different label is a conflict, a text label is refused,
    and the drift of the predictions is measured against the test split's distribution."""
    result, _ = trained
    secret, tokens = feedback_credentials("tester")
    app = create_app(result.artifact_dir, trusted_keys=_keys(), env="local", feedback=load_environment("local").feedback,
                     prediction_log_bucket=None, feedback_secret=secret)
    with TestClient(app, headers=bearer(tokens["tester"])) as client:
        record = {"area": 100.0, "rooms": 3, "district": "harbour"}
        answer = client.post("/v1/predict", json={"records": [record, {**record, "area": 150.0}]}).json()["predictions"]
        first, second = answer
        assert ".v" in first["prediction_id"]
        labelled = client.post("/v1/feedback", json={"feedback": [
            {"prediction_id": first["prediction_id"], "label": first["value"] + 10.0},
            {"prediction_id": second["prediction_id"], "label": int(second["value"]) - 20}]})
        assert labelled.status_code == 200, labelled.text
        body = labelled.json()
        assert body["accepted"] == 2 and body["correct"] is None
        assert body["mean_abs_error"] == pytest.approx((10.0 + (second["value"] - int(second["value"]) + 20)) / 2)
        again = client.post("/v1/feedback", json={"prediction_id": first["prediction_id"], "label": first["value"] + 10.0})
        assert again.status_code == 200  # the same label again: idempotent
        conflict = client.post("/v1/feedback", json={"prediction_id": first["prediction_id"], "label": 1.0})
        assert conflict.status_code == 409
        text = client.post("/v1/feedback", json={"prediction_id": second["prediction_id"], "label": "cheap"})
        assert text.status_code == 422 and "is not a number" in text.text
        forged = first["prediction_id"].replace(".v", ".v0", 1)[:len(first["prediction_id"])]
        assert client.post("/v1/feedback", json={"prediction_id": forged, "label": 1.0}).status_code == 422
        metrics = client.get("/metrics").text
        assert "toolkit_feedback_abs_error_count 2.0" in metrics and 'toolkit_feedback_total{outcome="scored"} 2.0' in metrics
        assert "toolkit_prediction_psi" in metrics


def test_auto_keeps_a_few_numeric_classes_as_classes(tmp_path):
    """Ten digit classes are classes, not a quantity: only a label that looks continuous turns into regression."""
    rng = np.random.default_rng(1)
    path = tmp_path / "digits.csv"
    path.write_text("a,b,digit\n" + "\n".join(f"{rng.normal():.3f},{rng.normal():.3f},{i % 10}" for i in range(300)))
    dataset = prepare_dataset(read_csv(path), "digit", task="auto")
    assert dataset.task == "classification" and len(dataset.classes) == 10


def test_retraining_a_regressor_is_gated_on_rmse(tmp_path):
    """`toolkit retrain`'s judge for a regressor: R² above the floor, and RMSE no worse than the
    champion's beyond the tolerance; a weak challenger is kept out, a better one released."""
    from toolkit.context import Context
    from toolkit.loop.retrain import gate, judge, train_challenger, training_data
    from toolkit.paths import ProjectPaths

    paths = ProjectPaths(tmp_path / "project")
    paths.root.mkdir()
    data = _houses(paths.root / "houses.csv")
    base = load_environment("local")
    training = base.training.model_copy(update={"dataset": "houses.csv", "label": "price", "target": None, "categorical": ["district"],
                                                "drop_columns": ["house"], "loss": "auto", "task": "auto", "epochs": 150})
    ctx = Context(base.model_copy(update={"training": training}), paths)
    choice = DatasetChoice.from_config(training, root=paths.root)
    assert choice.path == data
    prepared = training_data(ctx, choice, [])
    good = train_challenger(ctx, prepared, tmp_path / "good")
    weak_ctx = ctx.with_config(ctx.config.model_copy(update={"training": training.model_copy(update={"epochs": 8, "patience": None})}))
    weak = train_challenger(weak_ctx, prepared, tmp_path / "weak")
    kept = judge(ctx, prepared, good, weak)
    assert not kept.release and "RMSE" in kept.reason and "worse than the champion on the test split" in kept.reason
    released = judge(ctx, prepared, weak, good)
    assert released.release and "RMSE" in released.reason, released.reason
    assert set(released.record["challenger"]["test_split"]) == {"r2", "rmse", "mae", "n"}
    floor = gate(ctx, None, {"test_split": {"r2": -0.2, "rmse": 9.0, "mae": 7.0, "n": 60}})
    assert floor == (False, "the challenger's R² on the test split, -0.200, is not above the floor 0.0 "
                            "(feedback.retrain.r2_floor; 0 is predicting the mean)")


def test_a_regressors_prediction_log_and_feedback_round_trip_into_its_training_data(trained):
    """The prediction log line of a regressor holds values, its records read back, and labelled rows
    (numbers) join the base data as regression rows; a text label is refused there too."""
    from toolkit.loop.feedback_data import LabelledRow, with_feedback
    from toolkit.serve.log_format import prediction_line, records

    result, data = trained
    values = np.array([[101.5], [222.25]])
    line = prediction_line("v1", [], ["area", "rooms", "district"], [(1.0, ["a", "b"], [(100.0, 2, "hills"), (150.0, 3, "centre")],
                                                                       values, None)])
    assert line["values"] == [101.5, 222.25] and "labels" not in line
    back = records(json.loads(json.dumps(line)))
    assert [r["value"] for r in back] == [101.5, 222.25] and back[1]["features"] == {"area": 150.0, "rooms": 3, "district": "centre"}
    settings = load_environment("local").training.model_copy(update={"loss": "auto", "task": "auto"})
    base = DatasetChoice.from_config(settings, path=data, label="price", categorical=["district"], drop_columns=["house"]).load()
    merged = with_feedback(base, [LabelledRow("a", 1.0, back[0]["features"], 130.0, "tester")])
    assert merged.regression and len(merged.y) == len(base.y) + 1 and merged.y[-1] == 130.0
    with pytest.raises(Exception, match="not numbers"):
        with_feedback(base, [LabelledRow("a", 1.0, back[0]["features"], "cheap", "tester")])
