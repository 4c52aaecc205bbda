"""The prediction log's and the ground truth's format: JSON lines of columns (cheap to write, ~10x
faster to encode than a line per record), read back record by record.

    predictions (v2, one line per batch of requests, serve/prediction_log.py):
                 {"v": 2, "model_version": V, "times": [T per record], "prediction_ids": [...],
                  "features": {name: [...]}, "labels": [...], "probabilities": {class: [...]}}
    predictions (v1, one line per request, written until issue 19): the same with "time": T for all
    feedback:    {"v": 1, "time": T, "model_version": V, "prediction_ids": [...],
                  "labels": [...], "predicted": [...]}
"""

from __future__ import annotations

from itertools import chain

PREDICTIONS_VERSION = 2
FEEDBACK_VERSION = 1


def prediction_line(model_version: str, classes: list[str], features: list[str], batch: list[tuple]) -> dict:
    """One line for a batch of requests, each `(time, ids, rows, predictions)`: its records' prediction
    ids, their values in `features` order, and their {label, probabilities} answers."""
    times = list(chain.from_iterable([time] * len(ids) for time, ids, _, _ in batch))
    rows = list(chain.from_iterable(rows for _, _, rows, _ in batch))
    predictions = list(chain.from_iterable(predictions for _, _, _, predictions in batch))
    return {"v": PREDICTIONS_VERSION, "model_version": model_version, "times": times,
            "prediction_ids": list(chain.from_iterable(ids for _, ids, _, _ in batch)),
            "features": dict(zip(features, map(list, zip(*rows, strict=True)), strict=True)),
            "labels": [p["label"] for p in predictions],
            "probabilities": {c: [p["probabilities"][c] for p in predictions] for c in classes}}


def feedback_line(time: float, model_version: str, ids: list[str], labels: list[str], predicted: list[str]) -> dict:
    return {"v": FEEDBACK_VERSION, "time": time, "model_version": model_version, "prediction_ids": ids, "labels": labels,
            "predicted": predicted}


def records(line: dict) -> list[dict]:
    """A line's records: {prediction_id, time, model_version, label, and features + probabilities (predictions)
    or predicted (feedback)}."""
    ids = line["prediction_ids"]
    times = line["times"] if "times" in line else [line["time"]] * len(ids)
    out = []
    for i, prediction_id in enumerate(ids):
        record = {"prediction_id": prediction_id, "time": times[i], "model_version": line["model_version"],
                  "label": line["labels"][i]}
        if "features" in line:
            record["features"] = {name: values[i] for name, values in line["features"].items()}
            record["probabilities"] = {c: values[i] for c, values in line["probabilities"].items()}
        else:
            record["predicted"] = line["predicted"][i]
        out.append(record)
    return out
