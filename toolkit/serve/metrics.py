"""Prometheus metrics of one server instance (its own registry, so tests can run several)."""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector, generate_latest

from toolkit.ml.artifacts import ModelArtifact

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    def __init__(self, model: ModelArtifact) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("toolkit_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("toolkit_http_request_duration_seconds", "Request latency by route and status",
                                 ["route", "status"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.predictions = Counter("toolkit_predictions", "Predicted labels by class", ["label"], registry=self.registry)
        Info("toolkit_model", "The model being served", registry=self.registry).info({
            "version": model.version, "label": model.manifest["label"],
            "weights_sha256": model.manifest["files"]["weights.npz"]["sha256"],
        })
        created = dt.datetime.fromisoformat(model.manifest["created_at"]) if model.manifest.get("created_at") else None
        Gauge("toolkit_model_created_timestamp_seconds", "When the served model was trained (ServedModelTooOld)",
              registry=self.registry).set(created.timestamp() if created else 0)
        reference = Gauge("toolkit_model_class_share_reference", "Share of each class the model predicted on its test split",
                          ["label"], registry=self.registry)
        for label, share in (model.manifest.get("reference") or {}).get("predicted_class_share", {}).items():
            reference.labels(label).set(share)
        ProcessCollector(registry=self.registry)  # process_start_time_seconds: restarts (ServingRestarting)
        Gauge("toolkit_model_test_accuracy", "Accuracy of the served model on its test split (the online accuracy's reference)",
              registry=self.registry).set(float((model.manifest.get("metrics") or {}).get("test", {}).get("accuracy", 0.0)))
        self.log_records = Counter("toolkit_prediction_log_records", "Prediction log and ground-truth records by outcome",
                                   ["kind", "outcome"], registry=self.registry)
        self.log_queue = Gauge("toolkit_prediction_log_queue", "Records waiting to be shipped", ["kind"], registry=self.registry)
        self.log_errors = Counter("toolkit_prediction_log_errors", "Failed attempts to ship a batch", ["kind"], registry=self.registry)
        self.feedback = Counter("toolkit_feedback", "Labelled predictions by outcome (the label matched the prediction or not)",
                                ["outcome"], registry=self.registry)
        for kind, outcome in (("predictions", "shipped"), ("predictions", "dropped"), ("feedback", "shipped"), ("feedback", "dropped")):
            self.log_records.labels(kind, outcome)  # present from the start: rate() and alerts need the zero
        for outcome in ("correct", "wrong"):
            self.feedback.labels(outcome)

    def watch_drift(self, drift) -> None:
        """Export the drift monitor's PSI at each scrape."""
        self.registry.register(_DriftCollector(drift))

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)

    def count_predictions(self, labels: Iterable[str]) -> None:
        for label in labels:
            self.predictions.labels(label).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


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
