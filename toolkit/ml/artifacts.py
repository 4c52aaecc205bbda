"""Model artifacts: a directory with weights, a manifest and reports, verified on load.

    <version>/
      weights.npz           parameters by name, written byte-for-byte reproducibly
      metrics.json          evaluation report
      training_curves.png   loss and validation metrics per epoch
      manifest.json         architecture, preprocessing, classes, dataset sha256, code version,
                            created time, sha256 and size of every other file, and its own
                            checksum (sha256 of the manifest body), so an edit anywhere is caught

Loading checks everything before numpy reads a byte, and every failure is an
`ArtifactError` naming the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import ArtifactError
from toolkit.ml.manifest import FORMAT_VERSION, MANIFEST, WEIGHTS, check_manifest
from toolkit.ml.nn.model import Sequential, class_probabilities, regression_values
from toolkit.ml.preprocess import Preprocessor
from toolkit.ml.table import sha256_file

METRICS = "metrics.json"
CURVES = "training_curves.png"
CONFUSION = "confusion_matrix.png"  # the test split's
PREDICTED_VS_TRUE = "predicted_vs_true.png"  # a regressor's test split
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: same weights, same bytes


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez, but deterministic: sorted names, fixed zip timestamps."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH), buffer.getvalue())


def read_npz(source, expected: dict[str, tuple[tuple[int, ...], np.dtype]], path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz (`source`: its bytes as a file object; `path` names it in errors), each
    checked against `expected` {name: (shape, dtype)} from its header before its data is read: a
    crafted header cannot make us allocate what the network does not need."""
    arrays = {}
    try:
        with zipfile.ZipFile(source) as archive:
            members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
            if set(members) != set(expected):
                raise ArtifactError(f"{path}: holds {sorted(members)}, the architecture needs {sorted(expected)}.")
            for name, (shape, dtype) in expected.items():
                with archive.open(members[name]) as handle:
                    header = _npy_header(handle)
                if header != (shape, False, dtype):
                    raise ArtifactError(f"{path}: {name} is {header[2]} {header[0]}, the architecture needs {dtype} {shape}.")
                with archive.open(members[name]) as handle:
                    arrays[name] = np.lib.format.read_array(handle, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ArtifactError(f"{path}: weights cannot be read ({exc}).") from None
    return arrays


def _npy_header(handle) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an .npy header, without reading the data."""
    major, _ = np.lib.format.read_magic(handle)
    read_header = {1: np.lib.format.read_array_header_1_0, 2: np.lib.format.read_array_header_2_0}.get(major)
    if read_header is None:
        raise ValueError(f"unsupported .npy format version {major}")
    shape, fortran_order, dtype = read_header(handle)
    return tuple(shape), bool(fortran_order), dtype


def manifest_checksum(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class ModelArtifact:
    """A loaded, verified model: the network, its preprocessing and its manifest."""

    path: Path
    manifest: dict
    model: Sequential
    preprocessor: Preprocessor
    signed_by: str | None = None  # the trusted key that signed it, once its signature is verified (signing.load_signed_artifact)

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def classes(self) -> list[str]:
        return self.manifest["classes"]

    @property
    def regression(self) -> bool:
        return self.manifest.get("task") == "regression"

    def predict_values(self, features: np.ndarray) -> np.ndarray:
        """A regressor's predictions in the label's units (rows,), float64."""
        scaling = self.manifest["target_scaling"]
        return regression_values(self.model, features, scaling["mean"], scaling["std"])

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(n, n_classes) class probabilities for preprocessed features."""
        return class_probabilities(self.model, features, self.manifest["architecture"]["output"])


def new_version(weights_sha256: str, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{weights_sha256[:8]}"


def save_artifact(
    root: Path,
    model: Sequential,
    preprocessor: Preprocessor,
    *,
    output: str,
    classes: list[str],
    label: str,
    target: str | None,
    metrics: dict,
    dataset: dict,
    training: dict,
    code_version: str,
    write_extras=None,
    reference: dict | None = None,
    env: str | None = None,
    task: str = "classification",
    target_scaling: tuple[float, float] | None = None,
    trained_on: dict | None = None,
) -> Path:
    """Write a new artifact under `root/<version>/` atomically and point `root/latest` at it.

    `write_extras(directory)` may add report files (e.g. the curves PNG) before hashing.
    `trained_on`: the device that trained it (`Device.describe()`).
    """
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(root / f".staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write_npz(staging / WEIGHTS, model.weights())
        (staging / METRICS).write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        if write_extras is not None:
            write_extras(staging)
        files = {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(staging.iterdir())
            if p.is_file()
        }
        version = new_version(files[WEIGHTS]["sha256"])
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "code_version": code_version,
            "env": env,  # trained for this environment: its keys verify the signature (signing_keys.py)
            "architecture": {**model.spec(), "output": output},
            "preprocessing": preprocessor.to_dict(),
            "feature_names": preprocessor.feature_names,
            "task": task,
            "classes": classes,
            "label": label,
            "target": target,
            "metrics": {k: metrics[k] for k in ("test", "cv") if k in metrics},
            # What serving compares itself with: the predicted class shares on the test split.
            "reference": reference or {},
            "dataset": dataset,
            "training": training,
            "trained_on": trained_on or {"kind": "cpu"},
            "files": files,
        }
        if target_scaling is not None:  # regression: the network answers the standardized label
            manifest["target_scaling"] = {"mean": target_scaling[0], "std": target_scaling[1]}
        manifest["checksum"] = manifest_checksum(manifest)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        final = root / version
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    point_latest(root, version)
    return final


def point_latest(root: Path, version: str) -> None:
    """root/latest → root/<version>, atomically: readers never see a missing `latest`."""
    tmp_link = root / f".latest-{os.getpid()}"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(version)
    tmp_link.replace(root / "latest")


MAX_MANIFEST_BYTES = 16 * 2**20
MAX_ARTIFACT_FILES, MAX_ARTIFACT_BYTES = 64, 1 << 30


def read_artifact_files(directory: Path) -> dict[str, bytes]:
    """Every file of the artifact directory, read once, into memory: what is verified (checksums,
    signature) and what is loaded are then the same bytes. Only plain files: a symbolic link or a
    subdirectory is refused, and so is more than an artifact ever holds."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory}: no model artifact here (not a directory).")
    files, total = {}, 0
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink():
            raise ArtifactError(f"{entry}: is a symbolic link; an artifact holds only plain files.")
        if not entry.is_file():
            raise ArtifactError(f"{entry}: is not a plain file; an artifact holds only plain files.")
        total += entry.stat().st_size
        if len(files) >= MAX_ARTIFACT_FILES or total > MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"{directory}: over {MAX_ARTIFACT_FILES} files or {MAX_ARTIFACT_BYTES >> 20} MiB; this is not a model artifact.")
        try:
            files[entry.name] = entry.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"{entry}: cannot be read ({exc.strerror or exc}).") from None
    return files


def verify_artifact(directory: Path) -> dict:
    """Check the manifest (its schema and its own checksum) and every file it lists; return it."""
    return verify_files(read_artifact_files(directory), Path(directory))


def verify_files(files: dict[str, bytes], directory: Path) -> dict:
    """The manifest of an artifact's files (read_artifact_files), checked: its schema and its own
    checksum, and the size and sha256 of every file it lists. A file the loader needs must be listed,
    so everything that is loaded has been verified."""
    manifest_path = directory / MANIFEST
    manifest = _parse_manifest(files.get(MANIFEST), manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{manifest_path}: unsupported manifest (format_version must be {FORMAT_VERSION}).")
    if manifest.get("checksum") != manifest_checksum(manifest):
        raise ArtifactError(f"{manifest_path}: manifest was modified after it was written (checksum mismatch).")
    checked = check_manifest(manifest, str(manifest_path))
    for name, expected in checked.files.items():
        path = directory / name
        data = files.get(name)
        if data is None:
            raise ArtifactError(f"{path}: file listed in the manifest is missing.")
        if len(data) != expected.bytes:
            raise ArtifactError(f"{path}: size is {len(data)} bytes, the manifest says {expected.bytes} (truncated or replaced).")
        if hashlib.sha256(data).hexdigest() != expected.sha256:
            raise ArtifactError(f"{path}: sha256 does not match the manifest (the file was modified or corrupted).")
    return manifest


def _parse_manifest(data: bytes | None, path: Path) -> object:
    if data is None:
        raise ArtifactError(f"{path}: manifest is missing; this is not a complete model artifact.")
    if len(data) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{path}: manifest is over {MAX_MANIFEST_BYTES // 2**20} MiB; this is not a model artifact.")
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{path}: manifest is corrupt and cannot be parsed ({exc}).") from None


def load_artifact(directory: str | Path) -> ModelArtifact:
    """Verify, then build the network and read weights whose names, shapes and dtypes it expects
    (checksums only: a model to serve or predict with goes through signing.load_signed_artifact)."""
    return load_files(read_artifact_files(Path(directory)), Path(directory))


def load_files(files: dict[str, bytes], directory: Path) -> ModelArtifact:
    """The model of an artifact's files, read once (read_artifact_files): verified, then built."""
    manifest = verify_files(files, directory)
    model = Sequential.from_spec(manifest["architecture"])  # size-checked by the manifest schema
    expected = {name: (view.shape, model.dtype) for name, view in model.weights().items()}
    model.set_weights(read_npz(io.BytesIO(files[WEIGHTS]), expected, directory / WEIGHTS))
    return ModelArtifact(directory.resolve(), manifest, model, Preprocessor.from_dict(manifest["preprocessing"]))
