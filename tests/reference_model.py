"""An independent reading of a saved model, for tests: the manifest and weights.npz read with plain
json and numpy, the preprocessing and forward pass written out here in float64, sharing no code
with toolkit.ml. A test that compares the toolkit with this can fail when the toolkit is wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

MISSING = {"", "?", "NA", "N/A", "nan", "NaN", "null"}


def _category(value) -> str | None:
    if value is None or (isinstance(value, str) and value.strip() in MISSING):
        return None
    try:
        number = float(value)
    except ValueError:
        return str(value).strip()
    return str(int(number)) if number == int(number) else repr(number)


def reference_predict(model_dir: Path, records: list[dict]) -> list[dict]:
    manifest = json.loads((Path(model_dir) / "manifest.json").read_text())
    with np.load(Path(model_dir) / "weights.npz") as archive:
        weights = {name: archive[name].astype(np.float64) for name in archive.files}
    pre = manifest["preprocessing"]
    rows = []
    for record in records:
        row = []
        for spec in pre["numeric"]:
            value = record.get(spec["name"])
            value = spec["mean"] if value is None else float(value)
            row.append((value - spec["mean"]) / spec["std"])
        for spec in pre["categorical"]:
            key = _category(record.get(spec["name"]))
            key = spec["fill"] if key is None else key
            row += [1.0 if key == category else 0.0 for category in spec["categories"]]
        rows.append(row)
    h = np.array(rows, dtype=np.float64)
    for i, layer in enumerate(manifest["architecture"]["layers"]):
        if layer["type"] == "dense":
            h = h @ weights[f"layer{i}.W"] + weights[f"layer{i}.b"]
        elif layer["type"] == "relu":
            h = np.maximum(h, 0.0)
        elif layer["type"] == "tanh":
            h = np.tanh(h)
        elif layer["type"] == "sigmoid":
            h = 1.0 / (1.0 + np.exp(-h))
    classes = manifest["classes"]
    if manifest["architecture"]["output"] == "sigmoid":
        positive = [1.0 / (1.0 + math.exp(-z)) for z in h[:, 0]]
        probabilities = [[1.0 - p, p] for p in positive]
    else:
        shifted = np.exp(h - h.max(axis=1, keepdims=True))
        probabilities = (shifted / shifted.sum(axis=1, keepdims=True)).tolist()
    return [{"label": classes[int(np.argmax(p))], "probabilities": dict(zip(classes, p, strict=True))} for p in probabilities]
