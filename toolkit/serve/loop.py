"""The server's side of the feedback loop: prediction ids, the sampled prediction log, ground truth
from authenticated labellers, and drift (see shipping.py, prediction_ids.py, labels.py, drift.py).
`FeedbackLoop` is what the routes call."""

from __future__ import annotations

import math
import time

import numpy as np
import orjson

from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.predict import Scored
from toolkit.serve.drift import DriftMonitor
from toolkit.serve.labels import LabelBook, Labellers, load_credentials
from toolkit.serve.log_format import feedback_line
from toolkit.serve.metrics import ServerMetrics
from toolkit.serve.prediction_ids import PredictionIds, value_token
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
        if model.regression:  # the predictions' drift: their distribution over the test split's bins, as class shares are
            values = reference.get("predicted_value") or {"edges": [], "shares": [1.0]}
            self.value_edges, shares = np.asarray(values["edges"], dtype=np.float64), values["shares"]
        else:
            shares = [reference.get("predicted_class_share", {}).get(c, 0.0) for c in model.classes]
        self.drift = DriftMonitor(reference.get("inputs", {}), shares, config.drift_window)
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
        if self.model.regression:  # the id carries the value; drift bins it
            values = scored.probabilities[:, 0]
            ids = self.ids.issue_many([value_token(v) for v in values.tolist()])
            predicted = np.searchsorted(self.value_edges, values, side="right")
        else:
            ids, predicted = self.ids.issue_many(scored.predicted.tolist()), scored.predicted
        for prediction, prediction_id in zip(scored.predictions, ids, strict=True):
            prediction["prediction_id"] = prediction_id
        self.drift.observe(scored.features, predicted)
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
        if self.model.regression:
            return self._on_values(items, new, labeller)
        classes = self.model.classes
        predicted = [classes[self.ids.predicted_index(prediction_id)] for prediction_id, _ in items]
        hits = [p == label for p, (_, label) in zip(predicted, items, strict=True)]
        accepted, predicted = [items[i] for i in new], [predicted[i] for i in new]
        correct = sum(hits[i] for i in new)
        self.metrics.feedback.labels("correct").inc(correct)
        self.metrics.feedback.labels("wrong").inc(len(accepted) - correct)
        self._log_feedback(accepted, predicted, labeller)
        return 200, {"accepted": len(items), "correct": sum(hits)}

    def _on_values(self, items: list[tuple[str, float]], new: list[int], labeller: str) -> tuple[int, dict]:
        """A regressor's labels: each new one's absolute error against the value its id carries is
        observed (toolkit_feedback_abs_error: MAE and, from its buckets, the error's spread online)."""
        predicted = [self.ids.predicted_value(prediction_id) for prediction_id, _ in items]
        errors = [abs(float(label) - p) for p, (_, label) in zip(predicted, items, strict=True)]
        for i in new:
            self.metrics.feedback_abs_error.observe(errors[i])
        self.metrics.feedback.labels("scored").inc(len(new))
        self._log_feedback([items[i] for i in new], [predicted[i] for i in new], labeller)
        return 200, {"accepted": len(items), "correct": None, "mean_abs_error": sum(errors) / len(errors)}

    def _log_feedback(self, accepted: list[tuple], predicted: list, labeller: str) -> None:
        self.book.remember(accepted)
        shipper = self.shippers.get(Area.FEEDBACK)
        if shipper is not None and accepted:
            line = feedback_line(time.time(), self.model.version, [i for i, _ in accepted], [label for _, label in accepted], predicted,
                                 labeller)
            shipper.offer(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE), len(accepted))

    def check_feedback(self, items: list[dict]) -> list[tuple[list, str]]:
        """Problems (location, message) with each {prediction_id, label}: unknown ids, labels that are not
        classes (a regressor's: not finite numbers)."""
        if self.model.regression:
            return self._check_values(items)
        problems = []
        for i, item in enumerate(items):
            index = self.ids.predicted_index(item["prediction_id"])
            if index is None or index >= len(self.model.classes):
                problems.append((["body", "feedback", i, "prediction_id"], f"unknown prediction id {item['prediction_id']!r}"))
            if item["label"] not in self.model.classes:
                problems.append((["body", "feedback", i, "label"],
                                 f"{item['label']!r} is not a class of this model; classes are {self.model.classes}"))
        return problems

    def _check_values(self, items: list[dict]) -> list[tuple[list, str]]:
        problems = []
        for i, item in enumerate(items):
            if self.ids.predicted_value(item["prediction_id"]) is None:
                problems.append((["body", "feedback", i, "prediction_id"], f"unknown prediction id {item['prediction_id']!r}"))
            label = item["label"]
            if label.__class__ not in (int, float) or not math.isfinite(label):
                problems.append((["body", "feedback", i, "label"], f"{label!r} is not a number; this model predicts a number "
                                                                    f"('{self.model.manifest['label']}')"))
        return problems
