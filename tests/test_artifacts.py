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
    assert set(manifest["files"]) == {"weights.npz", "metrics.json", "training_curves.png", "confusion_matrix.png", "data_report.json"}
    assert manifest["dataset"]["sha256"] == __import__("hashlib").sha256(HEART.read_bytes()).hexdigest()
    assert manifest["version"] == directory.name
    assert manifest["classes"] == ["0", "1"] and manifest["target"] == "num > 0"
    assert manifest["architecture"]["output"] == "sigmoid"
    assert len(manifest["feature_names"]) == manifest["architecture"]["input_dim"]
    assert (directory.parent / "latest").resolve() == directory.resolve()
    assert (directory / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_loaded_model_predicts_exactly_what_it_predicted_before_saving(settings, tmp_path):
    """The round trip keeps the network and the preprocessing: the same rows give the same floats."""
    from toolkit.ml import artifacts
    from toolkit.ml.data import stratified_split
    from toolkit.ml.train import fit_model

    choice = DatasetChoice.from_config(settings)
    dataset = choice.load()
    train, val, test = stratified_split(dataset.y, settings.validation_fraction, settings.test_fraction, settings.seed)
    fitted = fit_model(dataset, train, val, settings, settings.seed)
    before = fitted.model.predict_logits(fitted.preprocessor.transform_table(dataset.table, test))
    directory = artifacts.save_artifact(tmp_path, fitted.model, fitted.preprocessor, output=fitted.output, classes=dataset.classes,
                                        label=dataset.label, target=dataset.target, metrics={}, dataset={}, training={},
                                        code_version="test")
    loaded = load_artifact(directory)
    after = loaded.model.predict_logits(loaded.preprocessor.transform_table(dataset.table, test))
    assert np.array_equal(before, after) and before.shape == (len(test), 1)
    assert loaded.preprocessor.to_dict() == fitted.preprocessor.to_dict()


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


# ---------------------------------------------------------------- crafted artifacts (checksums recomputed)


def _crafted(trained, tmp_path, edit, files: dict | None = None):
    """A copy whose manifest is edited by `edit(manifest)` and re-checksummed, as an attacker would;
    `files` {name: bytes} are written into the copy first (their manifest entries are up to `edit`).
    It is signed with the checkout's key, as an insider holding the key could: the signature is
    checked first, and the loader's own checks must still refuse what the manifest could abuse."""
    from conftest import SIGNING_KEY
    from toolkit.ml.artifacts import manifest_checksum
    from toolkit.ml.signing import sign_artifact

    target = tmp_path / "crafted"
    shutil.copytree(trained.artifact_dir, target)
    for name, data in (files or {}).items():
        (target / name).write_bytes(data)
    manifest = json.loads((target / "manifest.json").read_text())
    edit(manifest)
    manifest["checksum"] = manifest_checksum(manifest)
    (target / "manifest.json").write_text(json.dumps(manifest))
    sign_artifact(target, SIGNING_KEY.read_bytes())
    return target


def _entry(data: bytes) -> dict:
    import hashlib

    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _predict(run_cli, model):
    return run_cli("predict", "--model", model, input='[{"age": 50}]')


def _npz_claiming(arrays: dict, name: str, shape: tuple) -> bytes:
    """The arrays as an .npz in which `name`'s .npy header declares `shape` (its data stays small)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, array in arrays.items():
            member = io.BytesIO()
            if key == name:
                np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
                member.write(array.tobytes())
            else:
                np.lib.format.write_array(member, array)
            archive.writestr(f"{key}.npy", member.getvalue())
    return buffer.getvalue()


def test_weights_the_manifest_does_not_list_are_never_loaded(trained, tmp_path, run_cli):
    """Issue 13 item 5: weights.npz dropped from `files` (checksum recomputed) used to be loaded unverified."""
    model = _crafted(trained, tmp_path, lambda m: m["files"].pop("weights.npz"))
    result = _predict(run_cli, model)
    assert result.exit_code == 2, result.output
    assert "files must list ['weights.npz']" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["../../etc/passwd", "../../../../../etc/shadow", "/etc/passwd", "sub/weights.npz", ".hidden", "..", "a\\b"])
def test_manifest_names_cannot_leave_the_directory(trained, tmp_path, run_cli, name):
    """Item 6: no existence or size oracle: the name is refused before any file is looked at."""
    model = _crafted(trained, tmp_path, lambda m: m["files"].__setitem__(name, {"sha256": "0" * 64, "bytes": 1}))
    result = _predict(run_cli, model)
    assert result.exit_code == 2
    assert "string should match pattern" in result.stderr.lower() and "size is" not in result.stderr, result.stderr


def test_a_symlinked_file_is_refused(trained, tmp_path, run_cli):
    model = _crafted(trained, tmp_path, lambda m: None)
    (model / "metrics.json").unlink()
    (model / "metrics.json").symlink_to(trained.artifact_dir / "metrics.json")
    result = _predict(run_cli, model)
    assert result.exit_code == 2 and "metrics.json: is a symbolic link" in result.stderr


def _set_units(units):
    def edit(manifest):
        manifest["architecture"]["layers"][0]["units"] = units
    return edit


@pytest.mark.parametrize("edit, expected", [
    (lambda m: m.pop("files"), "files: Field required"),
    (lambda m: m.__setitem__("files", ["weights.npz"]), "files: Input should be a valid dictionary"),
    (_set_units(1_000_000_000), "architecture.layers.0.dense.units: Input should be less than or equal to 65536"),
    (lambda m: m["architecture"]["layers"].__setitem__(1, {"type": "swish"}), "architecture.layers.1: Input tag 'swish'"),
    (lambda m: m["architecture"].__setitem__("output", "linear"), "architecture.output: Input should be 'sigmoid', 'softmax' or 'identity'"),
    (lambda m: m["architecture"].__setitem__("output", "identity"), "a classifier has at least 2 classes and a sigmoid or softmax output"),
    (lambda m: m.__setitem__("task", "regression"), "a regressor has no classes, an identity output and its target_scaling"),
    (_set_units(4096), ", 16), the architecture needs float32 ("),  # a valid size the weights do not match
    (lambda m: m["architecture"].__setitem__("layers", [{"type": "dense", "units": 65536, "init": "he"}] * 6
                                                       + [{"type": "dense", "units": 1, "init": "he"}]),
     "parameters is over the limit"),
    (lambda m: m.__setitem__("classes", ["0", "1", "2"]), "a sigmoid output scores 2 classes"),
    (lambda m: m["preprocessing"]["numeric"][0].__setitem__("std", 0.0), "preprocessing.numeric.0.std: Input should be greater than 0"),
])
def test_crafted_manifests_exit_2_with_one_line(trained, tmp_path, run_cli, edit, expected):
    """Item 7: shapes and sizes are checked before anything is allocated; never a traceback."""
    result = _predict(run_cli, _crafted(trained, tmp_path, edit))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_an_npz_header_declaring_a_huge_array_is_refused_before_reading(trained, tmp_path, run_cli):
    """A weights file whose .npy header claims 15 GiB: refused from its header (no MemoryError)."""
    import zipfile

    from toolkit.ml.artifacts import load_artifact as load

    data = _npz_claiming(load(trained.artifact_dir).model.weights(), "layer0.W", (65536, 61440))  # 15 GiB
    model = _crafted(trained, tmp_path, lambda m: m["files"].__setitem__("weights.npz", _entry(data)), files={"weights.npz": data})
    assert zipfile.is_zipfile(model / "weights.npz")
    result = _predict(run_cli, model)
    assert result.exit_code == 2, result.output
    assert "layer0.W is float32 (65536, 61440), the architecture needs float32" in result.stderr, result.stderr
