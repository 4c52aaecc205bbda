"""One input contract for `toolkit predict` and the server (issue 27): the label and the columns
dropped at training are ignored and said so, any other unknown name is refused by both, a number
sent as a JSON text is refused by both; and batch scoring, CSV → CSV in chunks."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from conftest import SIGNING_KEY
from toolkit.config import load_environment
from toolkit.errors import DataError
from toolkit.ml.artifacts import load_artifact
from toolkit.ml.predict import score_csv
from toolkit.ml.signing import sign_artifact
from toolkit.ml.train import DatasetChoice, train_and_save
from toolkit.serve.app import create_app

FEATURES = ("weight", "height", "smoker", "region")


def _clinic(path, rows: int = 120, seed: int = 5):
    rng = np.random.default_rng(seed)
    lines = ["patient_id,weight,height,smoker,region,diagnosis"]
    for i in range(rows):
        weight, smoker, region = rng.normal(75, 12), int(rng.integers(0, 2)), ["north", "south"][int(rng.integers(0, 2))]
        sick = 0.08 * (weight - 75) + 1.5 * smoker + rng.normal(0, 0.7) > 0.9
        lines.append(f"P{i:04d},{weight:.1f},{rng.normal(172, 9):.1f},{smoker},{region},{'sick' if sick else 'well'}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    data = _clinic(root / "clinic.csv")
    settings = load_environment("local").training.model_copy(update={"epochs": 10, "loss": "auto"})
    choice = DatasetChoice.from_config(settings, path=data, label="diagnosis", categorical=["region"], drop_columns=["patient_id"])
    artifact = train_and_save(choice, settings, root / "artifacts", env="test").artifact_dir
    sign_artifact(artifact, SIGNING_KEY.read_bytes())
    return artifact, data


@pytest.fixture(scope="module")
def client(trained):
    return TestClient(create_app(trained[0]))


RECORD = {"weight": 80.5, "height": 170.0, "smoker": 1, "region": "south"}


def _cli(run_cli, artifact, records):
    return run_cli("predict", "--model", artifact, "--public-key", str(SIGNING_KEY.with_suffix(".pub")), "--json",
                   input=json.dumps(records))


def test_the_label_and_dropped_columns_are_ignored_and_said_so_by_both(trained, client, run_cli):
    artifact, _ = trained
    record = {**RECORD, "patient_id": "P9999", "diagnosis": "sick"}
    served = client.post("/v1/predict", json={"records": [record]})
    assert served.status_code == 200, served.text
    assert served.json()["ignored"] == ["diagnosis", "patient_id"]
    local = _cli(run_cli, artifact, [record])
    assert local.exit_code == 0, local.output
    assert json.loads(local.stdout)["ignored"] == ["diagnosis", "patient_id"]
    assert json.loads(local.stdout)["predictions"] == served.json()["predictions"]
    plain = client.post("/v1/predict", json={"records": [RECORD]}).json()
    assert "ignored" not in plain and plain["predictions"] == served.json()["predictions"]


@pytest.mark.parametrize("record, fragment", [
    ({**RECORD, "sample_id": 3}, "unknown feature(s) ['sample_id']"),
    ({**RECORD, "weight": "80.5"}, "expected a number or null, got the string '80.5'"),
])
def test_what_one_refuses_the_other_refuses(trained, client, run_cli, record, fragment):
    served = client.post("/v1/predict", json={"records": [record]})
    assert served.status_code == 422 and fragment in served.text
    local = _cli(run_cli, trained[0], [record])
    assert local.exit_code == 2 and fragment in local.stderr and "record 0" in local.stderr


def test_batch_scoring_streams_chunks_and_keeps_columns(trained, run_cli, tmp_path):
    artifact, data = trained
    model = load_artifact(artifact)
    out = tmp_path / "scored.csv"
    result = score_csv(model, data, out, keep=("patient_id",), chunk_rows=7)  # 120 rows: 18 chunks, the last one short
    assert result["rows"] == 120 and result["ignored"] == ["diagnosis"]
    with open(out, newline="") as handle:
        scored = list(csv.DictReader(handle))
    assert [row["patient_id"] for row in scored] == [f"P{i:04d}" for i in range(120)]
    # the same answers as scoring the whole file at once
    whole = json.loads(run_cli("predict", "--model", artifact, "--public-key", str(SIGNING_KEY.with_suffix(".pub")), "--input", data,
                               "--json").stdout)["predictions"]
    for row, answer in zip(scored, whole, strict=True):
        assert row["predicted"] == answer["label"]
        assert float(row["probability_sick"]) == pytest.approx(answer["probabilities"]["sick"], rel=1e-5)
    shown = run_cli("predict", "--model", artifact, "--public-key", str(SIGNING_KEY.with_suffix(".pub")), "--input", data,
                    "--output", tmp_path / "cli.csv", "--keep", "patient_id")
    assert shown.exit_code == 0 and "scored 120 rows" in shown.stdout
    # the CLI's default chunks give the same rows; probabilities to float32 rounding (BLAS may round
    # a 7-row product differently from a 120-row one)
    with open(tmp_path / "cli.csv", newline="") as handle:
        from_cli = list(csv.DictReader(handle))
    assert [(r["patient_id"], r["predicted"]) for r in from_cli] == [(r["patient_id"], r["predicted"]) for r in scored]
    for mine, theirs in zip(from_cli, scored, strict=True):
        assert mine.keys() == theirs.keys()
        assert all(float(mine[k]) == pytest.approx(float(theirs[k]), rel=1e-5) for k in mine if k.startswith("probability_"))


def test_batch_scoring_that_fails_leaves_no_file(trained, tmp_path):
    artifact, data = trained
    lines = data.read_text().splitlines()
    lines[100] = "P0099,heavy,170.0,1,south,sick"  # row 101 (line 101 after the header): a text where a number belongs
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "scored.csv"
    with pytest.raises(DataError, match="row 101"):
        score_csv(load_artifact(artifact), bad, out, chunk_rows=16)
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    header, *rows = data.read_text().splitlines()
    extra = tmp_path / "extra.csv"
    extra.write_text("\n".join([header + ",extra", *(row + ",1" for row in rows)]) + "\n")
    with pytest.raises(DataError, match=r"unknown column\(s\) \['extra'\]"):
        score_csv(load_artifact(artifact), extra, out)


def test_an_unseen_category_is_flagged_in_the_answer_and_counted(client):
    seen = client.post("/v1/predict", json={"records": [RECORD]}).json()
    assert "unseen_categories" not in seen
    answer = client.post("/v1/predict", json={"records": [{**RECORD, "region": "east"}, RECORD, {**RECORD, "region": "east"}]})
    assert answer.status_code == 200 and answer.json()["unseen_categories"] == {"region": ["east"]}
    metrics = client.get("/metrics").text
    assert 'toolkit_unseen_categories_total{feature="region"} 2.0' in metrics


def test_batch_scoring_never_overwrites_its_input_and_names_an_unwritable_output(trained, run_cli, tmp_path):
    artifact, data = trained
    copy = tmp_path / "clinic.csv"
    copy.write_bytes(data.read_bytes())
    args = ("predict", "--model", artifact, "--public-key", str(SIGNING_KEY.with_suffix(".pub")), "--input", copy)
    same = run_cli(*args, "--output", tmp_path / "." / "clinic.csv")
    assert same.exit_code == 2 and "would overwrite its input" in same.stderr
    assert copy.read_bytes() == data.read_bytes()
    nowhere = run_cli(*args, "--output", tmp_path / "missing" / "scored.csv")
    assert nowhere.exit_code == 2 and "cannot write it (No such file or directory)" in nowhere.stderr
    assert "Traceback" not in nowhere.stderr
