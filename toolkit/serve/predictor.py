"""What /v1/predict does once a batch is scored, whichever path scored it (the fast handler in
fast_routes.py or the FastAPI route in app.py): the feedback loop gives each prediction its id
and keeps the rows, the metrics count the classes, and the answer is built. One place, so the two
paths cannot answer differently."""

from __future__ import annotations

from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.predict import Scored
from toolkit.serve.loop import FeedbackLoop
from toolkit.serve.metrics import ServerMetrics


class Predictor:
    def __init__(self, model: ModelArtifact, metrics: ServerMetrics, feedback: FeedbackLoop | None) -> None:
        self.model, self.metrics, self.feedback = model, metrics, feedback

    def answer(self, rows: list, scored: Scored) -> dict:
        """The response body for `scored` (`rows`: the request's values in feature order)."""
        if self.feedback is not None:
            self.feedback.on_predictions(rows, scored)
        self.metrics.count_predictions(scored.predicted)
        return {"model_version": self.model.version, "predictions": scored.predictions}
