"""The recording and alerting rules, defined once, rendered as a Prometheus rule file.

The same rendered groups go everywhere: the local Prometheus (`toolkit local up`), the AMP rule
groups namespace (modules/monitoring.py), the PrometheusRule for prometheus-operator clusters and
the promtool tests. Thresholds come from the environment's `monitoring` section. Every alert has
a `severity` (page: someone must act now; ticket: within the day), a summary and description
with the values, and a runbook entry in the README (runbook_url). Alerts labelled `retrain:
"true"` are routed to the retraining hook (alertmanager.py).

Signals: the server's own metrics (toolkit/serve/metrics.py), `up` of the scrape targets, and for
Kubernetes objects the kube-state-metrics series (kube_job_*, kube_pod_*).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from toolkit.config import EnvironmentConfig

LABELLED = 'outcome=~"correct|wrong"'  # a prediction's first label; refused conflicting labels are not labels
JOB = 'job="serving"'  # the scrape job of the serving pods (local scrape config, ServiceMonitor, AMP scraper)
PREDICT = f'{JOB},route="/v1/predict"'
RUNBOOK = "README.md#runbook-{anchor}"  # relative to the repository that ships these rules
GROUP = "toolkit-serving"


@dataclass(frozen=True)
class Recording:
    record: str
    expr: str


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    for_seconds: int
    severity: str  # page | ticket
    summary: str
    description: str
    labels: dict[str, str] = field(default_factory=dict)

    def to_rule(self) -> dict:
        return {"alert": self.name, "expr": self.expr, "for": _duration(self.for_seconds),
                "labels": {"severity": self.severity, **self.labels},
                "annotations": {"summary": self.summary, "description": self.description,
                                "runbook_url": RUNBOOK.format(anchor=self.name.lower())}}


def _duration(seconds: int) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def recordings(config: EnvironmentConfig) -> list[Recording]:
    m = config.monitoring
    window, share = _duration(m.window_seconds), _duration(m.class_share_window_minutes * 60)
    accuracy = _duration(config.feedback.accuracy_window_minutes * 60)
    return [
        Recording("toolkit:predict_requests:rate", f"sum(rate(toolkit_http_requests_total{{{PREDICT}}}[{window}]))"),
        Recording("toolkit:predict_errors:ratio",
                  f'sum(rate(toolkit_http_requests_total{{{PREDICT},status=~"5.."}}[{window}])) / '
                  f"sum(rate(toolkit_http_requests_total{{{PREDICT}}}[{window}]))"),
        Recording("toolkit:predict_latency_seconds:p99",
                  f"histogram_quantile(0.99, sum by (le) (rate(toolkit_http_request_duration_seconds_bucket{{{PREDICT}}}[{window}])))"),
        Recording("toolkit:predict_latency_seconds:p50",
                  f"histogram_quantile(0.5, sum by (le) (rate(toolkit_http_request_duration_seconds_bucket{{{PREDICT}}}[{window}])))"),
        Recording("toolkit:online_accuracy:ratio",
                  f'sum(increase(toolkit_feedback_total{{{JOB},outcome="correct"}}[{accuracy}])) / '
                  f"sum(increase(toolkit_feedback_total{{{JOB},{LABELLED}}}[{accuracy}]))"),
        Recording("toolkit:predicted_class:share",
                  f"sum by (label) (increase(toolkit_predictions_total{{{JOB}}}[{share}])) / ignoring(label) group_left "
                  f"sum(increase(toolkit_predictions_total{{{JOB}}}[{share}]))"),
    ]


def alerts(config: EnvironmentConfig) -> list[Alert]:
    m, f, ns, env = config.monitoring, config.feedback, config.workloads.namespace, config.name
    slo = m.slo_p99_ms / 1000
    share = _duration(m.class_share_window_minutes * 60)
    accuracy = _duration(f.accuracy_window_minutes * 60)
    return [
        Alert("ServingErrorRatioHigh", f"toolkit:predict_errors:ratio > {m.max_error_ratio}", m.for_seconds, "page",
              f"{env}: {{{{ $value | humanizePercentage }}}} of predictions fail",
              f"{{{{ $value | humanizePercentage }}}} of /v1/predict answers were 5xx over the last {_duration(m.window_seconds)} "
              f"(the limit is {m.max_error_ratio:.1%}). Clients are getting errors."),
        Alert("ServingLatencyHigh", f"toolkit:predict_latency_seconds:p99 > {slo}", m.for_seconds, "page",
              f"{env}: p99 latency {{{{ $value | humanizeDuration }}}} is over the {m.slo_p99_ms} ms SLO",
              f"The 99th percentile of /v1/predict latency over the last {_duration(m.window_seconds)} is "
              f"{{{{ $value | humanizeDuration }}}}; the SLO is {m.slo_p99_ms} ms."),
        Alert("ServingTrafficLost",
              f"(sum(rate(toolkit_http_requests_total{{{PREDICT}}}[{m.traffic_lost_minutes}m])) or on() vector(0)) == 0 "
              f"and on() sum(up{{{JOB}}}) > 0", 60, "page",
              f"{env}: no predictions for {m.traffic_lost_minutes} minutes while serving is up",
              f"The serving pods are up but received no /v1/predict request in {m.traffic_lost_minutes} minutes: "
              "traffic is being lost before it reaches them (ingress, DNS, network policy, client)."),
        Alert("ServingRestarting", f"changes(process_start_time_seconds{{{JOB}}}[15m]) > {m.restarts}", 0, "page",
              f"{env}: serving instance {{{{ $labels.instance }}}} restarted {{{{ $value }}}} times in 15 minutes",
              f"The server at {{{{ $labels.instance }}}} restarted {{{{ $value }}}} times in 15 minutes (the limit is {m.restarts}): "
              "it is crashing or being killed (out of memory, failing liveness probe)."),
        Alert("ServingNotReady", f"up{{{JOB}}} == 0", m.not_ready_minutes * 60, "page",
              f"{env}: serving instance {{{{ $labels.instance }}}} is down",
              f"{{{{ $labels.instance }}}} has not answered its metrics scrape for {m.not_ready_minutes} minutes: "
              "the pod is not ready or not reachable."),
        Alert("PredictedClassShareShifted",
              f"abs(toolkit:predicted_class:share - on(label) group_left max by (label) (toolkit_model_class_share_reference{{{JOB}}})) "
              f"> {m.max_class_share_shift} and on() sum(increase(toolkit_predictions_total{{{JOB}}}[{share}])) "
              f">= {m.class_share_min_predictions}",
              m.for_seconds, "ticket",
              f"{env}: class {{{{ $labels.label }}}} is predicted {{{{ $value | humanizePercentage }}}} off its test-split share",
              f"Over the last {share} the share of predictions of class {{{{ $labels.label }}}} moved by {{{{ $value | humanizePercentage }}}} "
              f"from what the model predicted on its test split (the limit is {m.max_class_share_shift:.0%}): the inputs "
              "have changed, or the model no longer fits them.", {"retrain": "true"}),
        Alert("InputDriftDetected",
              f"max by (feature) (toolkit_feature_psi{{{JOB}}}) > {f.max_psi} "
              f"and on() min(toolkit_drift_window_records{{{JOB}}}) >= {f.drift_min_records}",
              f.drift_for_seconds, "ticket",
              f"{env}: input feature {{{{ $labels.feature }}}} drifted (PSI {{{{ $value | printf \"%.2f\" }}}})",
              f"The population stability index of feature {{{{ $labels.feature }}}} over the last {f.drift_window} predictions is "
              f"{{{{ $value | printf \"%.2f\" }}}} against the training data (above {f.max_psi}: a significant shift). The model "
              "is scoring inputs unlike those it learned from.", {"retrain": "true"}),
        Alert("OnlineAccuracyLow",
              f"toolkit:online_accuracy:ratio < (max(toolkit_model_test_accuracy{{{JOB}}}) - {f.accuracy_margin}) "
              f"and on() sum(increase(toolkit_feedback_total{{{JOB},{LABELLED}}}[{accuracy}])) >= {f.min_labelled}",
              m.for_seconds, "ticket",
              f"{env}: online accuracy {{{{ $value | humanizePercentage }}}} is below the model's test accuracy",
              f"Of the predictions labelled through /v1/feedback in the last {accuracy}, {{{{ $value | humanizePercentage }}}} were "
              f"right: more than {f.accuracy_margin:.0%} below the accuracy the model had on its test split.", {"retrain": "true"}),
        Alert("TrainingJobFailed", f'kube_job_status_failed{{namespace="{ns}",job_name=~"train-.*"}} > 0', 0, "ticket",
              f"{env}: training Job {{{{ $labels.job_name }}}} failed",
              f"Training Job {ns}/{{{{ $labels.job_name }}}} failed; `toolkit train --env {env} --remote` reports the reason, "
              "and the pod's log is kept until the Job's TTL."),
        Alert("TrainingPodPending",
              f'sum by (pod) (kube_pod_status_phase{{namespace="{ns}",pod=~"train-.*",phase="Pending"}}) > 0',
              m.pending_minutes * 60, "ticket",
              f"{env}: training pod {{{{ $labels.pod }}}} pending for {m.pending_minutes} minutes",
              f"Training pod {ns}/{{{{ $labels.pod }}}} has not been scheduled for {m.pending_minutes} minutes: no GPU node is "
              "free and the GPU pool cannot grow (max_size, quota, capacity in the zone)."),
        Alert("ServedModelTooOld",
              f"time() - max(toolkit_model_created_timestamp_seconds{{{JOB}}}) > {m.max_model_age_days * 86400}", 3600, "ticket",
              f"{env}: the served model is {{{{ $value | humanizeDuration }}}} old",
              f"The model being served was trained {{{{ $value | humanizeDuration }}}} ago; models are retrained at least every "
              f"{m.max_model_age_days} days.", {"retrain": "true"}),
    ]


def rule_groups(config: EnvironmentConfig) -> dict:
    """The rule file: {"groups": [...]} (Prometheus format, also what AMP and PrometheusRule take)."""
    interval = _duration(config.monitoring.evaluation_interval_seconds)
    return {"groups": [
        {"name": f"{GROUP}-recordings", "interval": interval,
         "rules": [{"record": r.record, "expr": r.expr} for r in recordings(config)]},
        {"name": f"{GROUP}-alerts", "interval": interval, "rules": [a.to_rule() for a in alerts(config)]},
    ]}


def render(config: EnvironmentConfig) -> str:
    return yaml.safe_dump(rule_groups(config), sort_keys=False, width=1000)
