"""Using a saved model: predictions for records by feature name, and scores on labelled data.

What `toolkit predict`, `toolkit evaluate` and the inference server call; nothing here trains, so
the server never loads the training code.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import DataError
from toolkit.ml import artifacts
from toolkit.ml.data import prepare_dataset, stratified_split
from toolkit.ml.input_contract import InputContract, RecordError
from toolkit.ml.nn.metrics import classification_report, regression_report
from toolkit.ml.table import Table, iter_csv, parse_csv, read_csv, sha256_file


def evaluate_artifact(model: artifacts.ModelArtifact, path: Path, delimiter: str | None = None, split: str = "auto",
                      importance_repeats: int = 0, seed: int = 0) -> dict:
    """Metrics of a saved model on a labelled CSV, with the model's own label rule.

    `split`: the rows of the model's own training file to score, reproduced from the seed and
    fractions its manifest records ("test", "validation", "train"; refused for another file or a
    model retrained on feedback); "all": every row; "auto": "test" on the training file, else "all".
    The report says which (`split`, `rows_seen_in_training`). `importance_repeats` > 0 adds the
    permutation importance of each feature column on those rows (`importance`)."""
    manifest = model.manifest
    trained_on = manifest.get("dataset") or {}
    same_file = trained_on.get("sha256") == sha256_file(path)
    if split == "auto":
        split = "test" if same_file and not trained_on.get("feedback") else "all"
    if split not in ("all", "auto") and not same_file:
        raise DataError(f"{path}: --split {split} needs the file the model was trained on ({trained_on.get('path')}, sha256 "
                        f"{str(trained_on.get('sha256'))[:12]}…), and this file differs; --split all scores it as new data.")
    if split != "all" and trained_on.get("feedback"):
        raise DataError(f"model {model.version} was retrained on labelled feedback as well: its splits cannot be rebuilt from "
                        f"{path} alone; --split all scores every row of it (training rows included).")
    table = read_csv(path, delimiter)
    used = set(model.preprocessor.columns) | {manifest["label"]}
    categorical = [c["name"] for c in model.preprocessor.categorical if c["name"] in table]
    unused = [c for c in table.columns if c not in used]
    dataset = prepare_dataset(table, manifest["label"], manifest["target"], categorical, unused,
                              task="regression" if model.regression else "classification")
    if not model.regression and dataset.target is None and dataset.classes != model.classes:
        unknown = sorted(set(dataset.classes) - set(model.classes))
        if unknown:
            raise DataError(f"{path}: label values {unknown} are not classes the model knows ({model.classes}).")
        # Re-index labels to the model's class order.
        remap = np.array([model.classes.index(c) for c in dataset.classes])
        dataset.y = remap[dataset.y]
    rows, seen = np.arange(len(dataset.y)), 0
    if same_file and not trained_on.get("feedback"):
        training = manifest["training"]
        splits = dict(zip(("train", "validation", "test"), stratified_split(
            dataset.strata, training["validation_fraction"], training["test_fraction"], training["seed"]), strict=True))
        rows = rows if split == "all" else splits[split]
        seen = len(splits["train"]) if split in ("all", "train") else 0
    elif same_file:
        seen = None  # some of them, with feedback rows besides: not known from the file alone
    features = model.preprocessor.transform_table(dataset.table, rows)
    if model.regression:
        report = regression_report(dataset.y[rows], model.predict_values(features))
    else:
        report = classification_report(dataset.y[rows], model.predict_proba(features), len(model.classes))
    report |= {"split": split, "rows_seen_in_training": seen}
    if importance_repeats:
        report["importance"] = permutation_importance(model, features, dataset.y[rows], importance_repeats, seed)
    return report


def permutation_importance(model: artifacts.ModelArtifact, features: np.ndarray, y: np.ndarray, repeats: int = 5,
                           seed: int = 0) -> list[dict]:
    """Per raw feature column: how much accuracy (a regressor: R²) drops when its values are shuffled
    across the rows (its one-hot block moved as one), mean and std over `repeats` shuffles; largest first."""
    rng = np.random.default_rng(seed)

    def score(x: np.ndarray) -> float:
        if model.regression:
            return regression_report(y, model.predict_values(x))["r2"]
        return float(np.mean(model.predict_proba(x).argmax(axis=1) == y))

    baseline = score(features)
    shuffled = features.copy()
    result = []
    for name, columns in model.preprocessor.column_slices().items():
        drops = []
        for _ in range(repeats):
            shuffled[:, columns] = features[rng.permutation(len(features)), columns]
            drops.append(baseline - score(shuffled))
        shuffled[:, columns] = features[:, columns]
        result.append({"feature": name, "mean": float(np.mean(drops)), "std": float(np.std(drops))})
    return sorted(result, key=lambda item: -item["mean"])


def predict_table(model: artifacts.ModelArtifact, table: Table) -> list[dict]:
    """{label, probabilities} per row (a regressor: {value}), through the model's own preprocessing."""
    return score_table(model, table).predictions


@dataclass
class Scored:
    predictions: list[dict]  # {label, probabilities} per row; a regressor's: {value}
    features: np.ndarray  # the model's feature matrix of the rows (what drift is measured on)
    predicted: np.ndarray | None  # the predicted class index per row; None for a regressor
    probabilities: np.ndarray  # (rows, classes), what `predictions` holds as dicts; a regressor's values (rows, 1)


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
        out = outputs(model, features)
    if not np.isfinite(out).all():
        row = int(np.argwhere(~np.isfinite(out))[0][0])
        raise DataError(f"{table.source}: {table.row_name(row)}: values are too extreme for the model to score.")
    return scored(model, features, out)


def outputs(model: artifacts.ModelArtifact, features: np.ndarray) -> np.ndarray:
    """The model's answer for each row: class probabilities (rows, classes), or a regressor's values (rows, 1)."""
    return model.predict_values(features)[:, None] if model.regression else model.predict_proba(features)


def scored(model: artifacts.ModelArtifact, features: np.ndarray, out: np.ndarray) -> Scored:
    """The answer for each row from `outputs`: the most probable class and all the probabilities,
    or a regressor's value."""
    if model.regression:
        return Scored([{"value": value} for value in out[:, 0].tolist()], features, None, out)
    classes = model.classes
    predicted = out.argmax(axis=1)
    predictions = [{"label": classes[i], "probabilities": dict(zip(classes, p, strict=True))}
                   for i, p in zip(predicted.tolist(), out.tolist(), strict=True)]
    return Scored(predictions, features, predicted, out)


def predict_records(model: artifacts.ModelArtifact, columns: dict[str, list], source: str) -> list[dict]:
    """Records by column name (request bodies, JSON input)."""
    return predict_table(model, Table.from_columns(columns, source))


def score_records(model: artifacts.ModelArtifact, columns: dict[str, list], source: str) -> Scored:
    return score_table(model, Table.from_columns(columns, source))


def score_csv(model: artifacts.ModelArtifact, path: Path, out: Path, keep: tuple[str, ...] = (), delimiter: str | None = None,
              chunk_rows: int = 8192, on_rows: Callable[[int], None] | None = None) -> dict:
    """Batch scoring, CSV → CSV: `path` read and scored `chunk_rows` at a time (memory bounded by the
    chunk, not the file), `out` written with the `keep` columns as they were, the predicted label and
    one probability column per class. Written beside `out` and moved into place at the end, so a
    failure leaves no half-written file. Returns {rows, columns, ignored}."""
    if Path(out).resolve() == Path(path).resolve():
        raise DataError(f"{out}: the output would overwrite its input; write the predictions to another file.")
    contract = InputContract.of(model)
    header, chunks = iter_csv(path, delimiter, chunk_rows)
    unknown_keep = [c for c in keep if c not in header]
    if unknown_keep:
        raise DataError(f"{path}: --keep column(s) {unknown_keep} are not in it; its columns: {header}.")
    contract.columns(header, str(path), keep)
    kept = [header.index(c) for c in keep]
    columns = [*keep, "predicted", *(f"probability_{c}" for c in model.classes)] if not model.regression else [*keep, "predicted"]
    partial = out.with_name(f".{out.name}.partial")
    rows = 0
    try:
        handle = open(partial, "w", newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{out}: cannot write it ({exc.strerror}).") from None
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for table, raw in chunks:
                result = score_table(model, table)
                if model.regression:
                    for cells, (value,) in zip(raw, result.probabilities.tolist(), strict=True):
                        writer.writerow([*(cells[i] for i in kept), f"{value:.8g}"])
                else:
                    labels = [model.classes[i] for i in result.predicted.tolist()]
                    for cells, label, probabilities in zip(raw, labels, result.probabilities.tolist(), strict=True):
                        writer.writerow([*(cells[i] for i in kept), label, *(f"{p:.6g}" for p in probabilities)])
                rows += len(raw)
                if on_rows is not None:
                    on_rows(len(raw))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return {"rows": rows, "columns": columns, "ignored": sorted(contract.ignored)}


MAX_INPUT_BYTES = 256 << 20  # `toolkit predict --input`: beyond this, score in parts (or serve the model)


def read_records(path: Path | None, stream=None, limit: int = MAX_INPUT_BYTES, contract: InputContract | None = None) -> Table:
    """Records from a CSV or JSON file (a list of objects, or {"records": [...]}) as a table;
    `stream`: a binary stream to read instead (stdin). At most `limit` bytes are read: a bigger input
    (or an endless one, /dev/zero) is refused, not buffered. With a model's `contract`, the records
    are held to it (unknown names and texts for numbers refused; what it ignores, noted on it)."""
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
        if contract is not None:
            try:
                rows = [contract.values(i, record) for i, record in enumerate(records)]
            except RecordError as exc:
                field = f", feature '{exc.feature}'" if exc.feature else ""
                raise DataError(f"{source}: record {exc.index}{field}: {exc}.") from None
            return Table.from_columns({name: [row[j] for row in rows] for j, name in enumerate(contract.features)}, source)
        names = list(dict.fromkeys(k for r in records for k in r))
        nested = next((k for r in records for k, v in r.items() if isinstance(v, (dict, list))), None)
        if nested is not None:
            raise DataError(f"{source}: feature '{nested}' holds an object or a list; a feature value is a number, a text or null.")
        return Table.from_columns({k: [r.get(k) for r in records] for k in names}, source)
    table = parse_csv(text, source)
    if contract is not None:
        contract.columns(table.columns, source)
    return table
