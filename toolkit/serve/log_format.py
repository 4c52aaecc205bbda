"""The prediction log's and the ground truth's format: JSON lines of columns (cheap to write, ~10x
faster to encode than a line per record), read back record by record.

    predictions (v2, one line per batch of requests, serve/prediction_log.py):
                 {"v": 2, "model_version": V, "request_times": [T per request], "request_sizes": [records per request],
                  "prediction_ids": [...], "features": {name: [...]}, "labels": [...], "probabilities": {class: [...]}}
                 (a regressor's: "values": [...] in place of labels and probabilities)
    predictions (v1, one line per request, written before the log was batched): the same with "time": T instead of
                 the request times and sizes
    feedback:    {"v": 1, "time": T, "model_version": V, "prediction_ids": [...],
                  "labels": [...], "predicted": [...], "labeller": NAME}  (lines before labellers had none; a
                 regressor's labels and predicted values are numbers)
"""

from __future__ import annotations

from itertools import chain

import numpy as np

PREDICTIONS_VERSION = 2
FEEDBACK_VERSION = 1


def prediction_line(model_version: str, classes: list[str], features: list[str], batch: list[tuple]) -> dict:
    """One line for a batch of requests, each `(time, ids, rows, probabilities, predicted)`: its records'
    prediction ids, their values in `features` order, their class probabilities (an array of rows ×
    classes) and predicted class indices (an array), as the answers gave them."""
    rows = list(chain.from_iterable(rows for _, _, rows, _, _ in batch))
    line = {"v": PREDICTIONS_VERSION, "model_version": model_version,
            "request_times": [time for time, *_ in batch], "request_sizes": [len(ids) for _, ids, *_ in batch],
            "prediction_ids": list(chain.from_iterable(ids for _, ids, *_ in batch)),
            "features": dict(zip(features, map(list, zip(*rows, strict=True)), strict=True))}
    if not classes:  # a regressor: its values
        return line | {"values": np.concatenate([p[:, 0] for _, _, _, p, _ in batch]).tolist()}
    probabilities = np.concatenate([p for _, _, _, p, _ in batch]).T.tolist()
    predicted = np.concatenate([p for _, _, _, _, p in batch]).tolist()
    return line | {"labels": [classes[i] for i in predicted], "probabilities": dict(zip(classes, probabilities, strict=True))}


def feedback_line(time: float, model_version: str, ids: list[str], labels: list[str], predicted: list[str], labeller: str) -> dict:
    return {"v": FEEDBACK_VERSION, "time": time, "model_version": model_version, "prediction_ids": ids, "labels": labels,
            "predicted": predicted, "labeller": labeller}


def records(line: dict) -> list[dict]:
    """A line's records: {prediction_id, time, model_version, label, and features + probabilities (predictions)
    or predicted and labeller (feedback)}."""
    ids = line["prediction_ids"]
    if "request_times" in line:
        times = list(chain.from_iterable([t] * n for t, n in zip(line["request_times"], line["request_sizes"], strict=True)))
    else:
        times = [line["time"]] * len(ids)
    out = []
    for i, prediction_id in enumerate(ids):
        record = {"prediction_id": prediction_id, "time": times[i], "model_version": line["model_version"]}
        if "values" in line:  # a regressor's predictions
            record["value"] = line["values"][i]
        else:
            record["label"] = line["labels"][i]
        if "features" in line:
            record["features"] = {name: values[i] for name, values in line["features"].items()}
            if "probabilities" in line:
                record["probabilities"] = {c: values[i] for c, values in line["probabilities"].items()}
        else:
            record["predicted"] = line["predicted"][i]
            record["labeller"] = line.get("labeller")
        out.append(record)
    return out
