"""What /v1/predict does once a batch is scored, whichever path scored it (the fast handler in
fast_routes.py or the FastAPI route in app.py): the feedback loop gives each prediction its id
and keeps the rows, the metrics count the classes and the unseen categories, and the answer is
built. One place, so the two paths cannot answer differently.

A categorical value the model never saw in training encodes as all zeros (as `toolkit predict`
does); the answer says so (`unseen_categories`: feature → the values) and
`toolkit_unseen_categories_total{feature}` counts them, so a new category is seen, not guessed at.
"""

from __future__ import annotations

import numpy as np

from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.predict import Scored
from toolkit.serve.loop import FeedbackLoop
from toolkit.serve.metrics import ServerMetrics


class Predictor:
    def __init__(self, model: ModelArtifact, metrics: ServerMetrics, feedback: FeedbackLoop | None) -> None:
        self.model, self.metrics, self.feedback = model, metrics, feedback
        preprocessor = model.preprocessor
        slices = preprocessor.column_slices()
        self.categorical = [spec["name"] for spec in preprocessor.categorical]
        self.categorical_at = [preprocessor.columns.index(name) for name in self.categorical]
        # feature column → its categorical column: one matmul gives each row's hits per categorical column
        self.blocks = np.zeros((preprocessor.width, len(self.categorical)), dtype=np.float32)
        for k, name in enumerate(self.categorical):
            self.blocks[slices[name], k] = 1.0

    def answer(self, rows: list, scored: Scored) -> dict:
        """The response body for `scored` (`rows`: the request's values in feature order)."""
        if self.feedback is not None:
            self.feedback.on_predictions(rows, scored)
        self.metrics.count_predictions(scored.predicted)
        answer = {"model_version": self.model.version, "predictions": scored.predictions}
        if self.categorical:
            unseen = np.argwhere(scored.features @ self.blocks == 0)  # (row, categorical column): no category's column set
            if len(unseen):
                answer["unseen_categories"] = self._unseen(rows, unseen)
        return answer

    def _unseen(self, rows: list, hits: np.ndarray) -> dict[str, list]:
        """feature → its unseen values (each once), counting one per record and feature."""
        found: dict[str, list] = {}
        for row, k in hits.tolist():
            values = found.setdefault(self.categorical[k], [])
            if rows[row][self.categorical_at[k]] not in values:
                values.append(rows[row][self.categorical_at[k]])
        for k, count in zip(*np.unique(hits[:, 1], return_counts=True), strict=True):
            self.metrics.unseen_categories.labels(self.categorical[k]).inc(int(count))
        return found
