"""The server's side of the feedback loop: prediction ids, the sampled prediction log, ground truth
and drift (see shipping.py, prediction_ids.py, drift.py). `FeedbackLoop` is what the routes call."""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass

from toolkit.config import FeedbackConfig
from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.predict import Scored
from toolkit.serve.drift import DriftMonitor
from toolkit.serve.metrics import ServerMetrics
from toolkit.serve.prediction_ids import PredictionIds
from toolkit.serve.shipping import Shipper, s3_put


@dataclass(frozen=True)
class LoopSettings:
    """What the server needs to know of the environment: from `toolkit serve --env`, or in the image
    from TOOLKIT_ENV, TOOLKIT_FEEDBACK (the `feedback` section as JSON) and TOOLKIT_PREDICTION_LOG_BUCKET."""

    env: str
    config: FeedbackConfig
    bucket: str | None  # None: ids, ground truth and drift, but no log shipped

    @classmethod
    def from_environment(cls) -> LoopSettings | None:
        if not os.environ.get("TOOLKIT_ENV"):
            return None
        config = FeedbackConfig.model_validate(json.loads(os.environ.get("TOOLKIT_FEEDBACK", "{}")))
        return cls(os.environ["TOOLKIT_ENV"], config, os.environ.get("TOOLKIT_PREDICTION_LOG_BUCKET") or None)


class FeedbackLoop:
    def __init__(self, model: ModelArtifact, metrics: ServerMetrics, settings: LoopSettings, put=None) -> None:
        config = settings.config
        self.model, self.metrics, self.config = model, metrics, config
        self.ids = PredictionIds.for_environment(settings.env, config.secret_env)
        reference = model.manifest.get("reference") or {}
        self.drift = DriftMonitor(reference.get("inputs", {}), reference.get("predicted_class_share", {}), model.classes,
                                  config.drift_window)
        metrics.watch_drift(self.drift)
        put = put or (s3_put(settings.bucket) if settings.bucket else None)
        self.shippers = {kind: Shipper(kind, settings.env, put, metrics, config.queue_size, config.batch_size, config.flush_seconds)
                         for kind in ("predictions", "feedback")} if put else {}

    def start(self) -> None:
        for shipper in self.shippers.values():
            shipper.start()

    async def stop(self) -> None:
        for shipper in self.shippers.values():
            await shipper.stop()

    def on_predictions(self, columns: dict[str, list], scored: Scored) -> None:
        """Give each prediction its id; bin its features for drift; log a sample of them."""
        self.drift.observe(scored.features, scored.predicted)
        now = time.time()
        sample = self.config.sample_rate
        for i, prediction in enumerate(scored.predictions):
            prediction["prediction_id"] = self.ids.issue(int(scored.predicted[i]))
            if "predictions" in self.shippers and (sample >= 1.0 or random.random() < sample):
                self.shippers["predictions"].offer({
                    "prediction_id": prediction["prediction_id"], "time": now, "model_version": self.model.version,
                    "features": {name: values[i] for name, values in columns.items()},
                    "label": prediction["label"], "probabilities": prediction["probabilities"]})

    def on_feedback(self, items: list[tuple[str, str]]) -> dict:
        """Count and log (prediction id, true label) pairs already checked by `check_feedback`."""
        correct = 0
        now = time.time()
        for prediction_id, label in items:
            predicted = self.model.classes[self.ids.predicted_index(prediction_id)]
            outcome = "correct" if predicted == label else "wrong"
            correct += outcome == "correct"
            self.metrics.feedback.labels(outcome).inc()
            if "feedback" in self.shippers:
                self.shippers["feedback"].offer({"prediction_id": prediction_id, "label": label, "predicted": predicted,
                                                 "time": now, "model_version": self.model.version})
        return {"accepted": len(items), "correct": correct}

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
