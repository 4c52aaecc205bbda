"""Reading an environment's Prometheus HTTP API: the local Prometheus, or the AMP workspace's
query endpoint signed with SigV4 (botocore, service "aps") from the stack outputs."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

from toolkit.config import EnvironmentConfig
from toolkit.errors import ToolkitError

Signer = Callable[[str, str], dict]  # (method, url) -> headers to add


def sigv4_signer(config: EnvironmentConfig) -> Signer:
    """Headers that authenticate a GET to AMP with the normal AWS credential chain."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.Session(region_name=config.aws.region)
    credentials = session.get_credentials()
    if credentials is None:
        raise ToolkitError(f"no AWS credentials to query {config.name}'s AMP workspace: configure AWS credentials and try again.")

    def sign(method: str, url: str) -> dict:
        request = AWSRequest(method=method, url=url)
        SigV4Auth(credentials.get_frozen_credentials(), "aps", config.aws.region).add_auth(request)
        return dict(request.headers.items())

    return sign


class PrometheusClient:
    def __init__(self, base_url: str, signer: Signer | None = None, timeout: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self.signer, self.timeout = signer, timeout

    def _get(self, path: str, params: dict | None = None):
        url = f"{self.base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        request = urllib.request.Request(url, headers=self.signer("GET", url) if self.signer else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ToolkitError(f"Prometheus at {self.base} answered {exc.code} to {path}: {exc.read()[:300]!r}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ToolkitError(f"cannot reach Prometheus at {self.base} ({exc}); locally, run `toolkit local up`.") from None
        if body.get("status") != "success":
            raise ToolkitError(f"Prometheus query {params} failed: {body.get('error', body)}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        return self._get("query", {"query": expr})["result"]

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def query_range(self, expr: str, minutes: float, points: int = 120) -> list[dict]:
        end = time.time()
        start = end - minutes * 60
        step = max((end - start) / points, 1.0)
        return self._get("query_range", {"query": expr, "start": start, "end": end, "step": step})["result"]

    def firing_alerts(self) -> list[dict]:
        return [a for a in self._get("alerts")["alerts"] if a.get("state") == "firing"]


def training_gpu_query(namespace: str) -> str:
    """GPU utilisation (%) of the training pods (`train-…`, `retrain-…`) per pod and GPU, from the DCGM
    exporter's per-pod mapping. Scraped through a ServiceMonitor, the exporter's `pod`/`namespace`
    labels become `exported_pod`/`exported_namespace` (the target's own win); scraped otherwise they
    stay: both are read, under `pod`."""
    exported = (f'label_replace(DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{namespace}",exported_pod=~"(re)?train-.+"}}, '
                '"pod", "$1", "exported_pod", "(.+)")')
    direct = f'DCGM_FI_DEV_GPU_UTIL{{namespace="{namespace}",pod=~"(re)?train-.+"}}'
    return f"max by (pod, gpu) ({exported}) or max by (pod, gpu) ({direct})"


def snapshot(client: PrometheusClient, config: EnvironmentConfig) -> dict:
    """The SLO figures, the model version and the firing alerts now."""
    from toolkit.monitoring.rules import JOB

    p99 = client.scalar("toolkit:predict_latency_seconds:p99")
    versions = sorted({r["metric"].get("version", "?") for r in client.query(f"toolkit_model_info{{{JOB}}}")})
    by_class = {r["metric"].get("label", "?"): float(r["value"][1])
                for r in client.query("sum by (label) (toolkit:predicted_class:share)")}
    return {
        "env": config.name,
        "request_rate": client.scalar("toolkit:predict_requests:rate"),
        "error_ratio": client.scalar("toolkit:predict_errors:ratio"),
        "max_error_ratio": config.monitoring.max_error_ratio,
        "p50_ms": _ms(client.scalar("toolkit:predict_latency_seconds:p50")),
        "p99_ms": _ms(p99),
        "slo_p99_ms": config.monitoring.slo_p99_ms,
        "model_versions": versions,
        "predicted_class_share": by_class,
        # empty where no training pod holds a GPU (or there is no DCGM exporter, as locally)
        "training_gpu_utilisation": sorted(({"pod": r["metric"].get("pod"), "gpu": r["metric"].get("gpu"),
                                             "percent": float(r["value"][1])}
                                            for r in client.query(training_gpu_query(config.workloads.namespace))),
                                           key=lambda row: (row["pod"] or "", row["gpu"] or "")),
        "firing_alerts": [{"alertname": a["labels"].get("alertname"), "severity": a["labels"].get("severity"),
                           "summary": a.get("annotations", {}).get("summary"), "since": a.get("activeAt")}
                          for a in client.firing_alerts()],
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or seconds != seconds else round(seconds * 1000, 1)  # NaN: no traffic in the window
