"""The labelled feedback in the artifact store: logged predictions (features) joined with the ground
truth that came back for them (labels), by prediction id."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass

import numpy as np

from toolkit.config import EnvironmentConfig
from toolkit.errors import ToolkitError
from toolkit.ml.data import Dataset
from toolkit.ml.table import Table
from toolkit.paths import store_prefix
from toolkit.serve.log_format import records as log_records


@dataclass
class LabelledRow:
    prediction_id: str
    time: float
    features: dict
    label: str


def _read(config: EnvironmentConfig, bucket: str, prefix: str) -> list[dict]:
    from botocore.exceptions import BotoCoreError, ClientError

    from toolkit.aws import client

    s3 = client("s3", config)
    records = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                for line in gzip.decompress(body).decode().splitlines():
                    if line.strip():
                        records += log_records(json.loads(line))
    except (BotoCoreError, ClientError) as exc:
        raise ToolkitError(f"reading s3://{bucket}/{prefix} failed: {exc}") from None
    return records


def labelled_rows(config: EnvironmentConfig, bucket: str) -> list[LabelledRow]:
    """Every logged prediction that got a label, oldest first (the last label given for an id counts)."""
    predictions = {r["prediction_id"]: r for r in _read(config, bucket, store_prefix("predictions", config.name))}
    labels = {}
    for record in sorted(_read(config, bucket, store_prefix("feedback", config.name)), key=lambda r: r["time"]):
        labels[record["prediction_id"]] = record["label"]
    rows = [LabelledRow(pid, predictions[pid]["time"], predictions[pid]["features"], label)
            for pid, label in labels.items() if pid in predictions]
    return sorted(rows, key=lambda r: (r.time, r.prediction_id))


def rows_digest(rows: list[LabelledRow]) -> str:
    canonical = json.dumps([[r.prediction_id, r.features, r.label] for r in rows], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_feedback(base: Dataset, rows: list[LabelledRow]) -> Dataset:
    """The base dataset with the labelled rows appended (features by column name, labels as classes)."""
    if not rows:
        return base
    unknown = sorted({r.label for r in rows} - set(base.classes))
    if unknown:
        raise ToolkitError(f"feedback labels {unknown} are not classes of the dataset ({base.classes}).")
    columns = {name: [r.features.get(name) for r in rows] for name in base.features}
    table = base.table.append(Table.from_columns(columns, "feedback"))
    y = np.concatenate([base.y, np.array([base.classes.index(r.label) for r in rows], dtype=np.int64)])
    return Dataset(table, base.numeric, base.categorical, y, base.classes, base.label, base.target, base.dropped_rows,
                   list(base.warnings))


def snapshot_bytes(rows: list[LabelledRow]) -> bytes:
    """The labelled rows as one gzipped JSON-lines file: what a retraining Job trains on, so that
    the Job and the gate see the same feedback however much arrives meanwhile."""
    lines = "".join(json.dumps({"prediction_id": r.prediction_id, "time": r.time, "features": r.features, "label": r.label},
                               separators=(",", ":")) + "\n" for r in rows)
    return gzip.compress(lines.encode(), mtime=0)


def read_snapshot(data: bytes) -> list[LabelledRow]:
    try:
        return [LabelledRow(**json.loads(line)) for line in gzip.decompress(data).decode().splitlines() if line.strip()]
    except (OSError, ValueError, TypeError) as exc:
        raise ToolkitError(f"the feedback snapshot is not gzipped JSON lines of labelled rows: {exc}") from None
