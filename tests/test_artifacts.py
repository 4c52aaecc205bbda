from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import HEART
from toolkit.config import load_environment
from toolkit.errors import ArtifactError
from toolkit.ml.artifacts import load_artifact, verify_artifact
from toolkit.ml.train import DatasetChoice, train_and_save


@pytest.fixture(scope="module")
def settings():
    return load_environment("local").training.model_copy(update={"epochs": 15})


@pytest.fixture(scope="module")
def trained(settings, tmp_path_factory):
    out = tmp_path_factory.mktemp("artifacts")
    return train_and_save(DatasetChoice.from_config(settings), settings, out, env="test")


def test_artifact_layout_and_manifest(trained):
    directory = trained.artifact_dir
    manifest = json.loads((directory / "manifest.json").read_text())
    assert set(manifest["files"]) == {"weights.npz", "metrics.json", "training_curves.png"}
    assert manifest["dataset"]["sha256"] == __import__("hashlib").sha256(HEART.read_bytes()).hexdigest()
    assert manifest["version"] == directory.name
    assert manifest["classes"] == ["0", "1"] and manifest["target"] == "num > 0"
    assert manifest["architecture"]["output"] == "sigmoid"
    assert len(manifest["feature_names"]) == manifest["architecture"]["input_dim"]
    assert (directory.parent / "latest").resolve() == directory.resolve()
    assert (directory / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_round_trip_predictions(trained):
    model = load_artifact(trained.artifact_dir)
    x = model.preprocessor.transform_columns({c: [1.0] * 3 for c in model.preprocessor.columns}, 3)
    proba = model.predict_proba(x)
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_same_seed_gives_byte_identical_weights(settings, tmp_path):
    a = train_and_save(DatasetChoice.from_config(settings), settings, tmp_path / "a", env="test")
    b = train_and_save(DatasetChoice.from_config(settings), settings, tmp_path / "b", env="test")
    assert (a.artifact_dir / "weights.npz").read_bytes() == (b.artifact_dir / "weights.npz").read_bytes()
    other = settings.model_copy(update={"seed": settings.seed + 1})
    c = train_and_save(DatasetChoice.from_config(other), other, tmp_path / "c", env="test")
    assert (a.artifact_dir / "weights.npz").read_bytes() != (c.artifact_dir / "weights.npz").read_bytes()


def _corrupt_copy(trained, tmp_path, damage):
    target = tmp_path / "model"
    shutil.copytree(trained.artifact_dir, target)
    damage(target)
    return target


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda d: (d / "weights.npz").write_bytes((d / "weights.npz").read_bytes()[:100]), r"weights.npz: size is 100 bytes"),
        (lambda d: (d / "weights.npz").unlink(), r"weights.npz: file listed in the manifest is missing"),
        (lambda d: (d / "manifest.json").unlink(), r"manifest.json: manifest is missing"),
        (lambda d: (d / "manifest.json").write_text("{not json"), r"manifest.json: manifest is corrupt"),
        (lambda d: (d / "metrics.json").write_text((d / "metrics.json").read_text().replace("0", "1", 1)), r"metrics.json: sha256 does not match"),
        (
            lambda d: (d / "manifest.json").write_text((d / "manifest.json").read_text().replace('"num > 0"', '"num > 1"')),
            r"manifest.json: manifest was modified",
        ),
    ],
)
def test_damaged_artifacts_are_refused_by_name(trained, tmp_path, damage, expected):
    directory = _corrupt_copy(trained, tmp_path, damage)
    with pytest.raises(ArtifactError, match=expected):
        load_artifact(directory)


def test_flipped_byte_in_weights_is_caught(trained, tmp_path):
    def flip(d):
        data = bytearray((d / "weights.npz").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (d / "weights.npz").write_bytes(bytes(data))

    with pytest.raises(ArtifactError, match="weights.npz: sha256 does not match"):
        verify_artifact(_corrupt_copy(trained, tmp_path, flip))


def test_not_a_directory(tmp_path):
    with pytest.raises(ArtifactError, match="not a directory"):
        load_artifact(tmp_path / "nope")
