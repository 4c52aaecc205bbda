"""Drift and online accuracy, computed by the server from what it already has.

Inputs: every prediction's row of the model's feature matrix is binned against the reference
distributions stored in the artifact (toolkit/ml/reference.py) into a ring buffer of the last
`window` rows, and the population stability index per feature and of the predicted classes is
computed from it. Both happen when /metrics is scraped: a request only appends its feature matrix
to a list that never holds more than the window's rows, so it pays a few microseconds whatever
its size, and the binning is done in bulk.

Accuracy: each label that comes back through /v1/feedback is counted correct or wrong against
the class the prediction id carries; Prometheus computes the accuracy over its window from these
counters, across replicas (toolkit/monitoring/rules.py).
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from toolkit.ml.reference import feature_bins, psi


class DriftMonitor:
    def __init__(self, reference: dict, prediction_shares: list[float], window: int) -> None:
        """`prediction_shares`: on the test split, the share of each predicted class (in class order),
        or of each bin of a regressor's values; what `observe`'s `predicted` indexes."""
        self.reference = reference
        self.names = [f["name"] for f in reference.get("features", [])]
        self.class_shares = np.asarray(prediction_shares, dtype=np.float64)
        self.window = window
        self.bins = np.zeros((window, len(self.names)), dtype=np.int16)
        self.predicted = np.zeros(window, dtype=np.int16)
        self.position = self.filled = 0
        self.pending: deque[tuple[np.ndarray, np.ndarray]] = deque()  # observed, not binned yet
        self.pending_rows = 0
        self.lock = threading.Lock()  # observe runs in the event loop; the scrape may run in a thread

    def observe(self, x: np.ndarray, predicted: np.ndarray) -> None:
        if not self.names:
            return
        with self.lock:
            self.pending.append((x[-self.window:], predicted[-self.window:]))
            self.pending_rows += min(len(x), self.window)
            while self.pending_rows - len(self.pending[0][0]) >= self.window:  # older rows would be overwritten anyway
                self.pending_rows -= len(self.pending.popleft()[0])

    def _bin_pending(self) -> None:
        """Bin what arrived since the last scrape into the ring buffer (under the lock)."""
        while self.pending:
            x, predicted = self.pending.popleft()
            rows = feature_bins(x, self.reference)
            at = (self.position + np.arange(len(rows))) % self.window
            self.bins[at] = rows
            self.predicted[at] = predicted
            self.position = int((self.position + len(rows)) % self.window)
            self.filled = min(self.filled + len(rows), self.window)
        self.pending_rows = 0

    def current(self) -> tuple[dict[str, float], float, int]:
        """({feature: PSI}, PSI of the predicted classes, rows in the window)."""
        with self.lock:
            self._bin_pending()
            bins, predicted, filled = self.bins[:self.filled].copy(), self.predicted[:self.filled].copy(), self.filled
        features = {}
        for k, feature in enumerate(self.reference.get("features", [])):
            counts = np.bincount(bins[:, k], minlength=len(feature["shares"]))[:len(feature["shares"])]
            features[feature["name"]] = psi(counts, feature["shares"])
        classes = np.bincount(predicted, minlength=len(self.class_shares))[:len(self.class_shares)]
        return features, psi(classes, self.class_shares), filled
