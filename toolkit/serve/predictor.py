"""What /v1/predict does once a batch is scored, whichever path scored it (the fast handler in
fast_routes.py or the FastAPI route in app.py): the feedback loop gives each prediction its id
and keeps the rows, the metrics count the classes and the unseen categories, and the answer is
built. One place, so the two paths cannot answer differently.

A categorical value the model never saw in training encodes as all zeros (as `toolkit predict`
does); the answer says so (`unseen_categories`: feature → the values) and
`toolkit_unseen_categories_total{feature}` counts them, so a new category is seen, not guessed at.
"""

from __future__ import annotations

from collections import Counter

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
        self.blocks = [slices[name] for name in self.categorical]  # each one's one-hot columns
        self.block_starts = np.array([block.start for block in self.blocks], dtype=np.intp)  # contiguous, in this order

    def answer(self, rows: list, scored: Scored) -> dict:
        """The response body for `scored` (`rows`: the request's values in feature order)."""
        if self.feedback is not None:
            self.feedback.on_predictions(rows, scored)
        if scored.predicted is not None:
            self.metrics.count_predictions(scored.predicted)
        else:
            for value in scored.probabilities[:, 0].tolist():
                self.metrics.predicted_values.observe(value)
        answer = {"model_version": self.model.version, "predictions": scored.predictions}
        if self.blocks:
            unseen = self._unseen_at(scored.features)
            if unseen:
                answer["unseen_categories"] = self._unseen(rows, unseen)
        return answer

    def _unseen_at(self, features: np.ndarray) -> list[tuple[int, int]]:
        """(row, categorical column) pairs whose one-hot block is all zero. A few rows in Python (one
        µs for one record, where numpy's per-call cost is several), more with one reduceat."""
        if len(features) <= 4:
            return [(r, k) for r, row in enumerate(features.tolist()) for k, block in enumerate(self.blocks) if not any(row[block])]
        hits = np.add.reduceat(features, self.block_starts, axis=1)
        return [] if hits.all() else [tuple(pair) for pair in np.argwhere(hits == 0).tolist()]

    def _unseen(self, rows: list, hits: list[tuple[int, int]]) -> dict[str, list]:
        """feature → its unseen values (each once), counting one per record and feature."""
        found: dict[str, list] = {}
        for row, k in hits:
            values = found.setdefault(self.categorical[k], [])
            if rows[row][self.categorical_at[k]] not in values:
                values.append(rows[row][self.categorical_at[k]])
        for k, count in Counter(k for _, k in hits).items():
            self.metrics.unseen_categories.labels(self.categorical[k]).inc(count)
        return found
