"""The prediction log's and the ground truth's format: one JSON line per request, columns of its
records (cheap to write, ~10x faster to encode than a line per record), read back record by record.

    predictions: {"v": 1, "time": T, "model_version": V, "prediction_ids": [...],
                  "features": {name: [...]}, "labels": [...], "probabilities": {class: [...]}}
    feedback:    {"v": 1, "time": T, "model_version": V, "prediction_ids": [...],
                  "labels": [...], "predicted": [...]}
"""

from __future__ import annotations

VERSION = 1


def prediction_line(time: float, model_version: str, classes: list[str], ids: list[str], columns: dict[str, list],
                    predictions: list[dict], rows: list[int] | None) -> dict:
    """`rows`: the sampled rows of the request (None: all)."""
    if rows is not None:
        ids = [ids[i] for i in rows]
        columns = {name: [values[i] for i in rows] for name, values in columns.items()}
        predictions = [predictions[i] for i in rows]
    return {"v": VERSION, "time": time, "model_version": model_version, "prediction_ids": ids, "features": columns,
            "labels": [p["label"] for p in predictions],
            "probabilities": {c: [p["probabilities"][c] for p in predictions] for c in classes}}


def feedback_line(time: float, model_version: str, ids: list[str], labels: list[str], predicted: list[str]) -> dict:
    return {"v": VERSION, "time": time, "model_version": model_version, "prediction_ids": ids, "labels": labels, "predicted": predicted}


def records(line: dict) -> list[dict]:
    """A line's records: {prediction_id, time, model_version, label, and features + probabilities (predictions)
    or predicted (feedback)}."""
    ids = line["prediction_ids"]
    out = []
    for i, prediction_id in enumerate(ids):
        record = {"prediction_id": prediction_id, "time": line["time"], "model_version": line["model_version"],
                  "label": line["labels"][i]}
        if "features" in line:
            record["features"] = {name: values[i] for name, values in line["features"].items()}
            record["probabilities"] = {c: values[i] for c, values in line["probabilities"].items()}
        else:
            record["predicted"] = line["predicted"][i]
        out.append(record)
    return out
