"""The server's side of the feedback loop: prediction ids, the sampled prediction log, ground truth
from authenticated labellers, and drift (see shipping.py, prediction_ids.py, labels.py, drift.py).
`FeedbackLoop` is what the routes call."""

from __future__ import annotations

import time

import orjson

from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.predict import Scored
from toolkit.serve.drift import DriftMonitor
from toolkit.serve.labels import LabelBook, Labellers, load_credentials
from toolkit.serve.log_format import feedback_line
from toolkit.serve.metrics import ServerMetrics
from toolkit.serve.prediction_ids import PredictionIds
from toolkit.serve.prediction_log import PredictionLog
from toolkit.serve.shipping import Shipper
from toolkit.serving import LoopSettings
from toolkit.store.layout import SERVER_LOGS, Area, StoreLayout
from toolkit.store.s3 import object_writer


class FeedbackLoop:
    def __init__(self, model: ModelArtifact, metrics: ServerMetrics, settings: LoopSettings, put=None) -> None:
        config = settings.config
        self.model, self.metrics, self.config = model, metrics, config
        self.labellers = Labellers(load_credentials(settings), settings.env)
        self.ids = PredictionIds(self.labellers.id_key)
        self.book = LabelBook(config.label_memory)
        reference = model.manifest.get("reference") or {}
        self.drift = DriftMonitor(reference.get("inputs", {}), reference.get("predicted_class_share", {}), model.classes,
                                  config.drift_window)
        metrics.watch_drift(self.drift)
        put = put or (object_writer(settings.bucket) if settings.bucket else None)
        layout = StoreLayout(settings.bucket or "", settings.env)
        self.shippers = {area: Shipper(area, layout.prefix(area), put, metrics, config.queue_size, config.batch_size, config.flush_seconds)
                         for area in SERVER_LOGS} if put else {}
        self.log = PredictionLog(self.shippers[Area.PREDICTIONS], model.version, model.classes, model.preprocessor.columns,
                                 config.sample_rate) if put else None

    def start(self) -> None:
        for shipper in self.shippers.values():
            shipper.start()

    async def stop(self) -> None:
        if self.log is not None:
            self.log.flush()
        for shipper in self.shippers.values():
            await shipper.stop()

    def on_predictions(self, rows: list, scored: Scored) -> None:
        """Give each prediction its id; keep its features for drift; log a sample of them (`rows`: the
        request's values in feature order). The request pays for the ids and a few appends: binning
        and encoding happen off the request path."""
        ids = self.ids.issue_many(scored.predicted.tolist())
        for prediction, prediction_id in zip(scored.predictions, ids, strict=True):
            prediction["prediction_id"] = prediction_id
        self.drift.observe(scored.features, scored.predicted)
        if self.log is not None:
            self.log.add(ids, rows, scored)

    def on_feedback(self, items: list[tuple[str, str]], labeller: str) -> tuple[int, dict]:
        """(status, body) for (prediction id, true label) pairs already checked by `check_feedback`, given
        by `labeller`: 409 naming the ids whose first label was another (nothing of the batch is taken);
        else 200. Idempotent: a label given again is answered as the first time, and only new labels
        are counted and logged."""
        new, _, conflicts = self.book.sort(items)
        if conflicts:
            self.metrics.feedback.labels("conflict").inc(len(conflicts))
            return 409, {"detail": [{"loc": ["body", "feedback", i, "label"], "type": "conflict",
                                     "msg": f"prediction {items[i][0]} already has another label; the first label stands"}
                                    for i in conflicts]}
        classes = self.model.classes
        predicted = [classes[self.ids.predicted_index(prediction_id)] for prediction_id, _ in items]
        hits = [p == label for p, (_, label) in zip(predicted, items, strict=True)]
        accepted, predicted = [items[i] for i in new], [predicted[i] for i in new]
        correct = sum(hits[i] for i in new)
        self.metrics.feedback.labels("correct").inc(correct)
        self.metrics.feedback.labels("wrong").inc(len(accepted) - correct)
        self.book.remember(accepted)
        shipper = self.shippers.get(Area.FEEDBACK)
        if shipper is not None and accepted:
            line = feedback_line(time.time(), self.model.version, [i for i, _ in accepted], [label for _, label in accepted], predicted,
                                 labeller)
            shipper.offer(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE), len(accepted))
        return 200, {"accepted": len(items), "correct": sum(hits)}

    def check_feedback(self, items: list[dict]) -> list[tuple[list, str]]:
        """Problems (location, message) with each {prediction_id, label}: unknown ids, labels that are not classes."""
        problems = []
        for i, item in enumerate(items):
            index = self.ids.predicted_index(item["prediction_id"])
            if index is None or index >= len(self.model.classes):
                problems.append((["body", "feedback", i, "prediction_id"], f"unknown prediction id {item['prediction_id']!r}"))
            if item["label"] not in self.model.classes:
                problems.append((["body", "feedback", i, "label"],
                                 f"{item['label']!r} is not a class of this model; classes are {self.model.classes}"))
        return problems
