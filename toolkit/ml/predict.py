"""Using a saved model: predictions for records by feature name, and scores on labelled data.

What `toolkit predict`, `toolkit evaluate` and the inference server call; nothing here trains, so
the server never loads the training code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toolkit.errors import DataError
from toolkit.ml import artifacts
from toolkit.ml.data import parse_csv, prepare_dataset, read_csv
from toolkit.ml.nn.metrics import classification_report


def evaluate_artifact(model: artifacts.ModelArtifact, path: Path, delimiter: str | None = None) -> dict:
    """Metrics of a saved model on a labelled CSV, with the model's own label rule."""
    manifest = model.manifest
    table = read_csv(path, delimiter)
    used = set(model.preprocessor.columns) | {manifest["label"]}
    categorical = [c["name"] for c in model.preprocessor.categorical if c["name"] in table.cells]
    unused = [c for c in table.columns if c not in used]
    dataset = prepare_dataset(table, manifest["label"], manifest["target"], categorical, unused)
    if dataset.target is None and dataset.classes != model.classes:
        unknown = sorted(set(dataset.classes) - set(model.classes))
        if unknown:
            raise DataError(f"{path}: label values {unknown} are not classes the model knows ({model.classes}).")
        # Re-index labels to the model's class order.
        remap = np.array([model.classes.index(c) for c in dataset.classes])
        dataset.y = remap[dataset.y]
    features = model.preprocessor.transform_table(dataset.table)
    proba = model.predict_proba(features)
    return classification_report(dataset.y, proba, len(model.classes))


def predict_records(model: artifacts.ModelArtifact, columns: dict[str, list], n: int, source: str) -> list[dict]:
    missing = [c for c in model.preprocessor.columns if c not in columns]
    if missing:
        raise DataError(f"{source}: missing feature(s) {missing}; the model needs {model.preprocessor.columns}.")
    with np.errstate(over="ignore", invalid="ignore"):
        features = model.preprocessor.transform_columns(columns, n, source)
        finite = np.isfinite(features)
        if not finite.all():
            row, column = np.argwhere(~finite)[0]
            name = model.preprocessor.feature_names[column].split("=")[0]
            raise DataError(f"{source}: record {row}: feature '{name}' is out of the range the model can represent.")
        proba = model.predict_proba(features)
    if not np.isfinite(proba).all():
        row = int(np.argwhere(~np.isfinite(proba))[0][0])
        raise DataError(f"{source}: record {row}: values are too extreme for the model to score.")
    return [
        {"label": model.classes[int(np.argmax(p))], "probabilities": dict(zip(model.classes, map(float, p), strict=True))}
        for p in proba
    ]


def read_records(path: Path | None, text: str | None = None) -> tuple[dict[str, list], int, str]:
    """Records from a CSV or JSON file (a list of objects, or {"records": [...]}) as columns."""
    source = str(path) if path else "stdin"
    if text is None:
        assert path is not None
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise DataError(f"{source}: cannot read ({exc.strerror}).") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: not valid JSON ({exc}).") from None
        records = data.get("records") if isinstance(data, dict) else data
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records) or not records:
            raise DataError(f'{source}: JSON input must be a non-empty list of objects or {{"records": [...]}}.')
        names = list(dict.fromkeys(k for r in records for k in r))
        return {k: [r.get(k) for r in records] for k in names}, len(records), source
    table = parse_csv(text, source)
    return table.cells, len(table), source
