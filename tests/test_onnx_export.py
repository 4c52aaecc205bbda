"""`toolkit export --format onnx` (issue 27, item 7), judged by runtimes we did not write: onnxruntime
scores every row of each dataset from its raw columns (missing cells included) as `toolkit predict`
does, to 1e-5; model-signing's own CLI verifies the exported file's signature and refuses a
changed byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnxruntime
import pytest

from conftest import HEART
from toolkit.ml.artifacts import load_artifact
from toolkit.ml.predict import score_table
from toolkit.ml.table import read_csv


def _json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _blobs(path, rows_per_class: int = 60):
    rng = np.random.default_rng(8)
    centres = rng.normal(0, 3, (3, 3))
    lines = ["id,a,b,c,shade,kind"]
    for k in range(3):
        for i in range(rows_per_class):
            x = centres[k] + rng.normal(0, 1.5, 3)
            shade = ["light", "dark", "Río Bajo", "?"][int(rng.integers(0, 4))]  # text categories, one missing token
            cells = [f"{v:.3f}" for v in x]
            if i % 17 == 0:
                cells[1] = ""  # a missing number
            lines.append(f"r{k}-{i}," + ",".join(cells) + f",{shade},k{k}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _onnx_inputs(model, table) -> dict:
    """The raw columns as the exported graph takes them: numbers as double (NaN missing), categories as their text."""
    feeds = {spec["name"]: table.numbers(spec["name"])[:, None].astype(np.float64) for spec in model.preprocessor.numeric}
    for spec in model.preprocessor.categorical:
        codes, keys = table.column(spec["name"]).categories()
        feeds[spec["name"]] = np.array([keys[c] if c >= 0 else "" for c in codes], dtype=object)[:, None]
    return feeds


@pytest.mark.parametrize("dataset", ["heart", "three classes"])
def test_onnxruntime_gives_what_toolkit_predict_gives_on_every_row(repo_copy, run_cli, tmp_path, dataset):
    if dataset == "heart":
        data, args = HEART, []
    else:
        data = _blobs(tmp_path / "blobs.csv")
        args = ["--data", data, "--label", "kind", "--categorical", "shade", "--drop", "id"]
    summary = _json(run_cli("train", "--env", "local", "--epochs", "30", *args, "--json"))
    out = tmp_path / "model.onnx"
    exported = _json(run_cli("export", "--model", summary["artifact"], "--env", "local", "--out", out, "--json"))
    assert exported["opset"] == 19 and exported["signature"] == f"{out}.sig"

    model = load_artifact(summary["artifact"])
    table = read_csv(data)
    reference = score_table(model, table)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(["probabilities", "label"], _onnx_inputs(model, table))
    assert probabilities.shape == reference.probabilities.shape == (len(table), len(model.classes))
    np.testing.assert_allclose(probabilities, reference.probabilities, atol=1e-5, rtol=0)
    assert labels.tolist() == [model.classes[i] for i in reference.predicted]
    if dataset == "heart":  # the bundled data has missing cells in a numeric and a categorical feature: both took the fills
        assert np.isnan(table.numbers("ca")).any() and (table.column("thal").categories()[0] < 0).any()


def test_the_exported_file_is_signed_and_model_signing_says_so(repo_copy, run_cli, tmp_path):
    summary = _json(run_cli("train", "--env", "local", "--epochs", "5", "--json"))
    out = tmp_path / "model.onnx"
    _json(run_cli("export", "--model", summary["artifact"], "--env", "local", "--out", out, "--json"))
    cli = os.path.join(os.path.dirname(sys.executable), "model_signing")
    public = repo_copy / ".local" / "signing" / "local.pub"

    def verify(path):
        return subprocess.run([cli, "verify", "key", "--signature", f"{out}.sig", "--public_key", str(public), str(path)],
                              capture_output=True, text=True)

    assert verify(out).returncode == 0
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(out.read_bytes()[:-1] + bytes([out.read_bytes()[-1] ^ 1]))
    refused = verify(changed)
    assert refused.returncode != 0 and "mismatch" in (refused.stdout + refused.stderr).lower()
    no_env = run_cli("export", "--model", summary["artifact"], "--public-key", public, "--out", tmp_path / "x.onnx")
    assert no_env.exit_code == 2 and "give --env ENV" in no_env.stderr
    nowhere = run_cli("export", "--model", summary["artifact"], "--env", "local", "--out", tmp_path / "missing" / "x.onnx")
    assert nowhere.exit_code == 2 and "cannot write it" in nowhere.stderr and "Traceback" not in nowhere.stderr
