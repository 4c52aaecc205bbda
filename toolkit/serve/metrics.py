"""Prometheus metrics of one server instance (its own registry, so tests can run several).

With several worker processes (`toolkit serve --workers N`, server.py), prometheus_client's
multiprocess mode is on (PROMETHEUS_MULTIPROC_DIR, set before this module is imported): each
worker writes its counters and histograms to files there and whichever worker answers a scrape
sums them all, so a scrape sees the whole server, never one worker's share. Gauges say how they
combine; the drift gauges are those of the worker that answers (each sees a random share of the
traffic); the process metrics are the supervisor's, whose start is the server's start.
"""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from toolkit.ml.artifacts import ModelArtifact

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
SUPERVISOR_PID_ENV = "TOOLKIT_SUPERVISOR_PID"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    def __init__(self, model: ModelArtifact) -> None:
        self.registry = CollectorRegistry()
        self._by_outcome: dict[tuple[str, int], tuple] = {}
        self.requests = Counter("toolkit_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("toolkit_http_request_duration_seconds", "Request latency by route and status",
                                 ["route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("toolkit_predictions", "Predicted labels by class", ["label"], registry=self.registry)
        self.unseen_categories = Counter("toolkit_unseen_categories", "Records whose categorical feature had a value the model "
                                         "never saw in training (encoded as no category)", ["feature"], registry=self.registry)
        self._by_class = [self.predictions.labels(label) for label in model.classes]  # one child per class index
        self.predicted_values = self.feedback_abs_error = None  # a regressor's only
        if model.regression:  # a regressor's answers, in buckets around its training label's spread
            scaling = model.manifest["target_scaling"]
            edges = sorted({round(scaling["mean"] + k * scaling["std"], 6) for k in (-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3)})
            self.predicted_values = Histogram("toolkit_predicted_value", "A regressor's predicted values", buckets=edges,
                                              registry=self.registry)
            self.feedback_abs_error = Histogram(
                "toolkit_feedback_abs_error", "A regressor's absolute error on each label that came back (sum/count: the online MAE)",
                buckets=sorted({round(k * scaling["std"], 6) for k in (0.05, 0.1, 0.25, 0.5, 1, 2, 3)}), registry=self.registry)
        # What prometheus_client's Info would export (toolkit_model_info{...} 1), as a gauge: Info has no multiprocess mode.
        Gauge("toolkit_model_info", "The model being served", ["version", "label", "weights_sha256"], registry=self.registry,
              multiprocess_mode="max").labels(model.version, model.manifest["label"],
                                               model.manifest["files"]["weights.npz"]["sha256"]).set(1)
        created = dt.datetime.fromisoformat(model.manifest["created_at"]) if model.manifest.get("created_at") else None
        Gauge("toolkit_model_created_timestamp_seconds", "When the served model was trained (ServedModelTooOld)",
              registry=self.registry, multiprocess_mode="max").set(created.timestamp() if created else 0)
        reference = Gauge("toolkit_model_class_share_reference", "Share of each class the model predicted on its test split",
                          ["label"], registry=self.registry, multiprocess_mode="max")
        for label, share in (model.manifest.get("reference") or {}).get("predicted_class_share", {}).items():
            reference.labels(label).set(share)
        Gauge("toolkit_model_test_accuracy", "Accuracy of the served model on its test split (the online accuracy's reference)",
              registry=self.registry, multiprocess_mode="max").set(
            float((model.manifest.get("metrics") or {}).get("test", {}).get("accuracy", 0.0)))
        # process_start_time_seconds: restarts (ServingRestarting); with workers, the supervisor's.
        self.collectors = [ProcessCollector(registry=None, pid=_supervisor_pid)]
        self.log_records = Counter("toolkit_prediction_log_records", "Prediction log and ground-truth records by outcome",
                                   ["kind", "outcome"], registry=self.registry)
        self.log_queue = Gauge("toolkit_prediction_log_queue", "Records waiting to be shipped", ["kind"], registry=self.registry,
                               multiprocess_mode="livesum")
        self.log_errors = Counter("toolkit_prediction_log_errors", "Failed attempts to ship a batch", ["kind"], registry=self.registry)
        self.feedback = Counter("toolkit_feedback", "Labels by outcome: the first label of a prediction matched it (correct) or not (wrong), or a later label "
                                "contradicted the first (conflict, refused with 409)",
                                ["outcome"], registry=self.registry)
        for kind, outcome in (("predictions", "shipped"), ("predictions", "dropped"), ("feedback", "shipped"), ("feedback", "dropped")):
            self.log_records.labels(kind, outcome)  # present from the start: rate() and alerts need the zero
        for outcome in ("scored", "conflict") if model.regression else ("correct", "wrong", "conflict"):
            self.feedback.labels(outcome)

    def watch_drift(self, drift) -> None:
        """Export the drift monitor's PSI at each scrape."""
        self.collectors.append(_DriftCollector(drift))

    def observe(self, route: str, status: int, seconds: float) -> None:
        children = self._by_outcome.get((route, status))
        if children is None:  # labels() costs more than the increment: once per (route, status)
            children = self._by_outcome[(route, status)] = (self.requests.labels(route, str(status)),
                                                            self.latency.labels(route, str(status)))
        children[0].inc()
        children[1].observe(seconds)

    def count_predictions(self, predicted: np.ndarray) -> None:
        """`predicted`: each row's class index. One increment per class, not per row (a 64-row batch paid 64)."""
        if not self._by_class:
            return
        if len(predicted) == 1:
            self._by_class[int(predicted[0])].inc()
            return
        for child, count in zip(self._by_class, np.bincount(predicted, minlength=len(self._by_class)).tolist(), strict=True):
            if count:
                child.inc(count)

    def render(self) -> tuple[bytes, str]:
        registry = CollectorRegistry()
        if MULTIPROCESS:  # every worker's files, summed; not this process's own registry
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(_Registry(self.registry))
        for collector in self.collectors:
            registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _supervisor_pid():
    return os.environ.get(SUPERVISOR_PID_ENV) or "self"


class _Registry:
    """A registry's metrics, as one collector of another registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()


class _DriftCollector:
    def __init__(self, drift) -> None:
        self.drift = drift

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        features, predictions, size = self.drift.current()
        family = GaugeMetricFamily("toolkit_feature_psi", "Population stability index of each input feature over the drift window "
                                   "against the training data", labels=["feature"])
        for name, value in features.items():
            family.add_metric([name], value)
        yield family
        yield GaugeMetricFamily("toolkit_prediction_psi", "PSI of the predicted classes over the drift window against the test split",
                                value=predictions)
        yield GaugeMetricFamily("toolkit_drift_window_records", "Rows in the drift window", value=size)
