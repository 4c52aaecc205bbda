"""Training as a data scientist runs it (issue 27): any number of classes with the environment files
as shipped, model settings from the command line for one run (recorded in the manifest), class
weights, and clear refusals for a label that is not a set of classes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _blobs(path, classes: int, rows_per_class: int = 60, seed: int = 3):
    """`classes` Gaussian clusters in 4 numbers and a text category, label 'kind' (c0, c1, ...)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, 4))
    lines = ["x1,x2,x3,x4,colour,kind"]
    for c in range(classes):
        for _ in range(rows_per_class):
            x = centres[c] + rng.normal(0, 1, 4)
            lines.append(",".join(f"{v:.3f}" for v in x) + f",{['red', 'blue'][c % 2]},c{c}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _manifest(summary) -> dict:
    return json.loads(open(os.path.join(summary["artifact"], "manifest.json")).read())


@pytest.mark.parametrize("classes", [3, 10])
def test_multi_class_trains_with_the_shipped_environment_file(repo_copy, run_cli, tmp_path, classes):
    data = _blobs(tmp_path / "blobs.csv", classes)
    summary = _json(run_cli("train", "--env", "local", "--data", data, "--label", "kind", "--categorical", "colour",
                            "--epochs", "60", "--json"))
    manifest = _manifest(summary)
    assert manifest["classes"] == sorted(f"c{c}" for c in range(classes)) and manifest["architecture"]["output"] == "softmax"
    assert manifest["training"]["loss"] == "auto"
    assert summary["test"]["accuracy"] > 0.8


def test_flags_override_the_model_settings_for_one_run_and_the_manifest_records_them(repo_copy, run_cli, tmp_path):
    summary = _json(run_cli("train", "--env", "local", "--hidden-layers", "12,6", "--activation", "tanh", "--learning-rate", "0.01",
                            "--epochs", "4", "--batch-size", "16", "--patience", "2", "--l2", "0.001", "--class-weight", "balanced",
                            "--seed", "5", "--json"))
    training = _manifest(summary)["training"]
    assert training["hidden_layers"] == [12, 6] and training["activation"] == "tanh" and training["learning_rate"] == 0.01
    assert training["epochs"] == 4 and training["batch_size"] == 16 and training["patience"] == 2 and training["l2"] == 0.001
    assert training["class_weight"] == "balanced" and training["seed"] == 5
    layers = _manifest(summary)["architecture"]["layers"]
    assert [layer.get("units") for layer in layers if layer["type"] == "dense"] == [12, 6, 1]
    assert {layer["type"] for layer in layers} == {"dense", "tanh"}
    # the file itself is untouched: the next run has its settings again
    plain = _json(run_cli("train", "--env", "local", "--epochs", "2", "--json"))
    assert _manifest(plain)["training"]["hidden_layers"] != [12, 6]


@pytest.mark.parametrize("args, expected", [
    (["--hidden-layers", "64,x"], "--hidden-layers '64,x': give layer widths separated by commas"),
    (["--learning-rate", "5"], "--learning-rate: Input should be less than or equal to 1"),
    (["--l2", "-1"], "--l2: Input should be greater than or equal to 0"),
    (["--remote", "--epochs", "3"], "--epochs: a remote training Job trains with the environment file's settings"),
])
def test_a_bad_setting_names_its_flag(repo_copy, run_cli, args, expected):
    result = run_cli("train", "--env", "local", *args)
    assert result.exit_code == 2 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_binary_loss_on_three_classes_names_the_file_to_edit(repo_copy, run_cli, tmp_path):
    data = _blobs(tmp_path / "blobs.csv", 3)
    result = run_cli("train", "--env", "local", "--data", data, "--label", "kind", "--drop", "colour",
                     "--loss", "binary_cross_entropy")
    assert result.exit_code == 2
    assert "needs exactly 2 classes but the label has 3" in result.stderr and "environments/local.yaml" in result.stderr


def _prices(path):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (250, 3))
    price = 3 * x[:, 0] - x[:, 1] + rng.normal(0, 0.1, 250)
    path.write_text("a,b,c,price\n" + "\n".join(f"{a:.3f},{b:.3f},{c:.3f},{p:.2f}" for (a, b, c), p in zip(x, price, strict=True)))
    return path


def test_a_continuous_label_trains_a_regressor_and_says_so(repo_copy, run_cli, tmp_path):
    result = run_cli("train", "--env", "local", "--data", _prices(tmp_path / "prices.csv"), "--label", "price", "--cv", "5")
    assert result.exit_code == 0, result.output
    assert "task     regression (the label 'price' looks continuous: " in result.stdout
    assert "cv(5)    r2 " in result.stdout and "test     r2 " in result.stdout


@pytest.mark.parametrize("args", [["--loss", "binary_cross_entropy"], ["--task", "classification"]])
def test_a_classification_loss_on_a_continuous_label_is_refused_saying_so(repo_copy, run_cli, tmp_path, args):
    result = run_cli("train", "--env", "local", "--data", _prices(tmp_path / "prices.csv"), "--label", "price", *args)
    assert result.exit_code == 2
    assert "the label 'price' looks continuous" in result.stderr and "--task regression" in result.stderr
    assert "Traceback" not in result.stderr


def test_dropped_label_rows_tiny_test_splits_and_a_dropped_label_are_said(repo_copy, run_cli, tmp_path):
    data = _blobs(tmp_path / "blobs.csv", 2, rows_per_class=50)
    lines = data.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ","  # one row without its label
    data.write_text("\n".join(lines) + "\n")
    result = run_cli("train", "--env", "local", "--data", data, "--label", "kind", "--categorical", "colour", "--epochs", "3")
    assert result.exit_code == 0, result.output
    assert "1 row(s) without a value in the label column 'kind' were left out" in result.stderr
    assert "the test split has 20 rows (under 30)" in result.stderr
    assert "data     99 rows used of 100 (1 left out: no label); no missing cells; classes c0 49%, c1 51%" in result.stdout
    artifact = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("artifact"))
    report = json.loads(open(os.path.join(artifact, "data_report.json")).read())
    assert report["rows_read"] == 100 and report["rows_left_out"] == {"without a label": 1} and report["classes"] == {"c0": 49, "c1": 50}
    assert report["columns"]["colour"] == {"kind": "categorical", "missing": 0, "filled_with": None, "categories": 2}
    assert report["columns"]["kind"] == {"kind": "label"} and report["splits"]["test"] == 20
    dropped = run_cli("train", "--env", "local", "--data", data, "--label", "kind", "--drop", "kind")
    assert dropped.exit_code == 2 and "the label column 'kind' is also listed to drop" in dropped.stderr


def test_evaluate_scores_the_held_out_split_of_the_training_file(repo_copy, run_cli, tmp_path):
    """The test split is rebuilt from the manifest's seed and fractions: the same rows, so the same
    metrics as training reported; `all` says how many of its rows were trained on."""
    summary = _json(run_cli("train", "--env", "local", "--epochs", "20", "--json"))
    data = repo_copy / "data" / "heart-cleveland.csv"
    auto = _json(run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", data, "--json"))
    splits = json.loads(open(summary["metrics_file"]).read())["splits"]
    assert auto["split"] == "test" and auto["n"] == splits["test"] and auto["rows_seen_in_training"] == 0
    for key in ("accuracy", "roc_auc", "f1"):
        assert auto[key] == pytest.approx(summary["test"][key], abs=1e-12)
    every = _json(run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", data, "--split", "all", "--json"))
    assert every["n"] == 303 and every["rows_seen_in_training"] == splits["train"]
    validation = _json(run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", data, "--split", "validation",
                               "--json"))
    assert validation["n"] == splits["validation"]
    shown = run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", data, "--split", "all")
    assert f"every row (303 rows; {splits['train']} of them trained on)" in shown.stdout
    other = tmp_path / "other.csv"
    other.write_text(data.read_text().replace("\n63.0,", "\n64.0,", 1))  # one cell changed: another file
    refused = run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", other, "--split", "test")
    assert refused.exit_code == 2 and "needs the file the model was trained on" in refused.stderr
    new_data = _json(run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", other, "--json"))
    assert new_data["split"] == "all" and new_data["rows_seen_in_training"] == 0


def test_importance_ranks_the_informative_columns_and_the_artifact_has_a_confusion_matrix(repo_copy, run_cli, tmp_path):
    """Permutation importance: a column built to carry nothing ranks last with ~0; the informative ones
    lose accuracy when shuffled. The training run draws the test split's confusion matrix."""
    data = _blobs(tmp_path / "blobs.csv", 3, rows_per_class=80)
    rng = np.random.default_rng(1)
    lines = data.read_text().splitlines()
    lines = [lines[0].replace(",kind", ",noise,kind")] + [line.rsplit(",", 1)[0] + f",{rng.normal():.3f}," + line.rsplit(",", 1)[1]
                                                          for line in lines[1:]]
    data.write_text("\n".join(lines) + "\n")
    summary = _json(run_cli("train", "--env", "local", "--data", data, "--label", "kind", "--drop", "colour", "--epochs", "80", "--json"))
    assert (open(os.path.join(summary["artifact"], "confusion_matrix.png"), "rb").read(8)) == b"\x89PNG\r\n\x1a\n"
    png = tmp_path / "importance.png"
    report = _json(run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", data, "--importance", png, "--json"))
    ranking = {item["feature"]: item["mean"] for item in report["importance"]}
    assert set(ranking) == {"x1", "x2", "x3", "x4", "noise"}
    assert max(ranking.values()) > 0.1 and abs(ranking["noise"]) < 0.03
    assert report["importance_png"] == str(png) and png.read_bytes()[:4] == b"\x89PNG"
    nowhere = run_cli("evaluate", "--model", summary["artifact"], "--env", "local", "--data", data, "--importance",
                      tmp_path / "missing" / "i.png")
    assert nowhere.exit_code == 2 and "cannot write the plot" in nowhere.stderr
