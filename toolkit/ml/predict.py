"""Using a saved model: predictions for records by feature name, and scores on labelled data.

What `toolkit predict`, `toolkit evaluate` and the inference server call; nothing here trains, so
the server never loads the training code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import DataError
from toolkit.ml import artifacts
from toolkit.ml.data import prepare_dataset
from toolkit.ml.nn.metrics import classification_report
from toolkit.ml.table import Table, parse_csv, read_csv


def evaluate_artifact(model: artifacts.ModelArtifact, path: Path, delimiter: str | None = None) -> dict:
    """Metrics of a saved model on a labelled CSV, with the model's own label rule."""
    manifest = model.manifest
    table = read_csv(path, delimiter)
    used = set(model.preprocessor.columns) | {manifest["label"]}
    categorical = [c["name"] for c in model.preprocessor.categorical if c["name"] in table]
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


def predict_table(model: artifacts.ModelArtifact, table: Table) -> list[dict]:
    """{label, probabilities} per row, through the model's own preprocessing."""
    return score_table(model, table).predictions


@dataclass
class Scored:
    predictions: list[dict]  # {label, probabilities} per row
    features: np.ndarray  # the model's feature matrix of the rows (what drift is measured on)
    predicted: np.ndarray  # the predicted class index per row
    probabilities: np.ndarray  # (rows, classes), what `predictions` holds as dicts


def score_table(model: artifacts.ModelArtifact, table: Table) -> Scored:
    missing = [c for c in model.preprocessor.columns if c not in table]
    if missing:
        raise DataError(f"{table.source}: missing feature(s) {missing}; the model needs {model.preprocessor.columns}.")
    with np.errstate(over="ignore", invalid="ignore"):
        features = model.preprocessor.transform_table(table)
        finite = np.isfinite(features)
        if not finite.all():
            row, column = np.argwhere(~finite)[0]
            name = model.preprocessor.feature_names[column].split("=")[0]
            raise DataError(f"{table.source}: {table.row_name(int(row))}: feature '{name}' is out of the range the model can represent.")
        proba = model.predict_proba(features)
    if not np.isfinite(proba).all():
        row = int(np.argwhere(~np.isfinite(proba))[0][0])
        raise DataError(f"{table.source}: {table.row_name(row)}: values are too extreme for the model to score.")
    return scored(model.classes, features, proba)


def scored(classes: list[str], features: np.ndarray, proba: np.ndarray) -> Scored:
    """The answer for each row from the class probabilities: the most probable class and all of them."""
    predicted = proba.argmax(axis=1)
    predictions = [{"label": classes[i], "probabilities": dict(zip(classes, p, strict=True))}
                   for i, p in zip(predicted.tolist(), proba.tolist(), strict=True)]
    return Scored(predictions, features, predicted, proba)


def predict_records(model: artifacts.ModelArtifact, columns: dict[str, list], source: str) -> list[dict]:
    """Records by column name (request bodies, JSON input)."""
    return predict_table(model, Table.from_columns(columns, source))


def score_records(model: artifacts.ModelArtifact, columns: dict[str, list], source: str) -> Scored:
    return score_table(model, Table.from_columns(columns, source))


MAX_INPUT_BYTES = 256 << 20  # `toolkit predict --input`: beyond this, score in parts (or serve the model)


def read_records(path: Path | None, stream=None, limit: int = MAX_INPUT_BYTES) -> Table:
    """Records from a CSV or JSON file (a list of objects, or {"records": [...]}) as a table;
    `stream`: a binary stream to read instead (stdin). At most `limit` bytes are read: a bigger input
    (or an endless one, /dev/zero) is refused, not buffered."""
    source = str(path) if path else "stdin"
    try:
        if stream is None:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
        else:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise DataError(f"{source}: over {limit >> 20} MiB; score it in parts, or serve the model (`toolkit serve`).")
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{source}: cannot read it as UTF-8 text ({getattr(exc, 'strerror', None) or exc}).") from None
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source}: not valid JSON ({exc}).") from None
        except RecursionError:
            raise DataError(f"{source}: JSON nested too deeply; records are objects of feature values.") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts (4,300)
            raise DataError(f"{source}: a value cannot be read as a number ({exc}).") from None
        records = data.get("records") if isinstance(data, dict) else data
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records) or not records:
            raise DataError(f'{source}: JSON input must be a non-empty list of objects or {{"records": [...]}}.')
        names = list(dict.fromkeys(k for r in records for k in r))
        nested = next((k for r in records for k, v in r.items() if isinstance(v, (dict, list))), None)
        if nested is not None:
            raise DataError(f"{source}: feature '{nested}' holds an object or a list; a feature value is a number, a text or null.")
        return Table.from_columns({k: [r.get(k) for r in records] for k in names}, source)
    return parse_csv(text, source)
