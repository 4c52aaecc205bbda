"""What a person looks at, defined once: the panels of the Grafana dashboard (dashboard.py) and of
`toolkit monitor --png` (plots.py) are built from this list, so both show the same PromQL."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.config import EnvironmentConfig
from toolkit.monitoring.rules import JOB, PREDICT


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str  # Grafana legend template: "{{status}}"


@dataclass(frozen=True)
class Panel:
    title: str
    queries: list[Query]
    unit: str  # Grafana unit: reqps, s, percentunit, short
    kind: str = "timeseries"  # or "stat"
    threshold: float | None = None  # drawn as a line (the SLO)
    width: int = 12
    description: str = ""
    extra: dict = field(default_factory=dict)


def panels(config: EnvironmentConfig) -> list[Panel]:
    m = config.monitoring
    window = f"{m.window_seconds}s"
    return [
        Panel("Request rate by status", [Query(f"sum by (status) (rate(toolkit_http_requests_total{{{PREDICT}}}[{window}]))", "{{status}}")],
              "reqps", description="POST /v1/predict answers per second, by HTTP status (499: the client went away)."),
        Panel("Latency p50 / p99 vs SLO", [Query("toolkit:predict_latency_seconds:p50", "p50"),
                                          Query("toolkit:predict_latency_seconds:p99", "p99")],
              "s", threshold=m.slo_p99_ms / 1000, description=f"The SLO: p99 under {m.slo_p99_ms} ms."),
        Panel("Predictions by class", [Query(f"sum by (label) (rate(toolkit_predictions_total{{{JOB}}}[{window}]))", "class {{label}}")],
              "ops", description="Predicted labels per second; compare with the shares on the model's test split."),
        Panel("Error ratio", [Query("toolkit:predict_errors:ratio", "5xx ratio")], "percentunit", threshold=m.max_error_ratio,
              description=f"Share of 5xx answers; alerts above {m.max_error_ratio:.1%}."),
        Panel("Model version", [Query(f"count by (version) (toolkit_model_info{{{JOB}}})", "{{version}}")], "short", kind="stat",
              width=6, description="The model version each serving instance reports."),
        Panel("GPU utilisation", [Query('avg by (Hostname, gpu) (DCGM_FI_DEV_GPU_UTIL)', "{{Hostname}} GPU {{gpu}}"),
                                 Query('avg by (Hostname, gpu) (DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) * 100)',
                                       "{{Hostname}} GPU {{gpu}} memory")],
              "percent", width=9, description="From the NVIDIA DCGM exporter on the GPU pools (empty while the pool is at zero)."),
        Panel("Firing alerts", [Query('sum by (alertname) (ALERTS{alertstate="firing"})', "{{alertname}}")], "short", width=9,
              description="Alerts firing now (Prometheus's ALERTS series)."),
    ]


def all_expressions(config: EnvironmentConfig) -> list[str]:
    return [query.expr for panel in panels(config) for query in panel.queries]
