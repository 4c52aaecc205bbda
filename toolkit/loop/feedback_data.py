"""The labelled feedback in the artifact store: logged predictions (features) joined with the ground
truth that came back for them (labels), by prediction id. The first label given for an id stands,
whichever server took it; later labels for the id are not used (the servers refuse them with 409,
this join makes sure of it across replicas). Each row keeps the labeller who gave it."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, replace

import numpy as np

from toolkit.config import EnvironmentConfig
from toolkit.errors import ToolkitError
from toolkit.ml.data import Dataset
from toolkit.ml.table import Table
from toolkit.serve.log_format import records as log_records
from toolkit.store.layout import Area, StoreLayout
from toolkit.store.s3 import read_objects


@dataclass
class LabelledRow:
    prediction_id: str
    time: float
    features: dict
    label: str | float  # a class; a regressor's: a number
    labeller: str | None = None  # None: feedback logged before labellers had names


def _read(config: EnvironmentConfig, url: str) -> list[dict]:
    """Every record of the server's log under `url` (gzipped JSON lines, serve/log_format.py)."""
    records = []
    for body in read_objects(config, url):
        for line in gzip.decompress(body).decode().splitlines():
            if line.strip():
                records += log_records(json.loads(line))
    return records


def labelled_rows(config: EnvironmentConfig, bucket: str) -> list[LabelledRow]:
    """Every logged prediction that got a label, oldest first, with its first label and who gave it."""
    store = StoreLayout.of(config, bucket)
    predictions = {r["prediction_id"]: r for r in _read(config, store.area_url(Area.PREDICTIONS))}
    labels: dict[str, tuple[str, str | None]] = {}
    for record in sorted(_read(config, store.area_url(Area.FEEDBACK)), key=lambda r: r["time"]):
        labels.setdefault(record["prediction_id"], (record["label"], record.get("labeller")))
    rows = [LabelledRow(pid, predictions[pid]["time"], predictions[pid]["features"], label, labeller)
            for pid, (label, labeller) in labels.items() if pid in predictions]
    return sorted(rows, key=lambda r: (r.time, r.prediction_id))


def rows_digest(rows: list[LabelledRow]) -> str:
    canonical = json.dumps([[r.prediction_id, r.features, r.label, r.labeller] for r in rows], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_feedback(base: Dataset, rows: list[LabelledRow]) -> Dataset:
    """The base dataset with the labelled rows appended (features by column name; labels as classes,
    a regressor's as numbers)."""
    if not rows:
        return base
    if base.regression:
        bad = sorted({repr(r.label) for r in rows if r.label.__class__ not in (int, float) or not np.isfinite(r.label)})
        if bad:
            raise ToolkitError(f"feedback labels {bad[:5]} are not numbers; a regressor's labels are.")
        labels = np.array([float(r.label) for r in rows])
    else:
        unknown = sorted({r.label for r in rows} - set(base.classes))
        if unknown:
            raise ToolkitError(f"feedback labels {unknown} are not classes of the dataset ({base.classes}).")
        labels = np.array([base.classes.index(r.label) for r in rows], dtype=np.int64)
    columns = {name: [r.features.get(name) for r in rows] for name in base.features}
    table = base.table.append(Table.from_columns(columns, "feedback"))
    return replace(base, table=table, y=np.concatenate([base.y, labels]), warnings=list(base.warnings))


def snapshot_bytes(rows: list[LabelledRow]) -> bytes:
    """The labelled rows as one gzipped JSON-lines file: what a retraining Job trains on, so that
    the Job and the gate see the same feedback however much arrives meanwhile."""
    lines = "".join(json.dumps({"prediction_id": r.prediction_id, "time": r.time, "features": r.features, "label": r.label,
                                "labeller": r.labeller}, separators=(",", ":")) + "\n" for r in rows)
    return gzip.compress(lines.encode(), mtime=0)


def read_snapshot(data: bytes) -> list[LabelledRow]:
    try:
        return [LabelledRow(**json.loads(line)) for line in gzip.decompress(data).decode().splitlines() if line.strip()]
    except (OSError, ValueError, TypeError) as exc:
        raise ToolkitError(f"the feedback snapshot is not gzipped JSON lines of labelled rows: {exc}") from None
