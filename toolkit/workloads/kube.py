"""A small typed-by-table Kubernetes API layer over the official `kubernetes` client.

Only the kinds the toolkit manages are known; each maps to its REST path. Requests go through
the client's ApiClient (auth, TLS, token refresh hook), so EKS tokens and kubeconfigs both work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

from toolkit.errors import ToolkitError

FIELD_MANAGER = "toolkit"


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{prefix}/namespaces/{namespace}/{self.plural}" if self.namespaced and namespace else f"{prefix}/{self.plural}"
        return f"{path}/{quote(name)}" if name else path


KINDS = {k.kind: k for k in [
    Kind("v1", "Namespace", "namespaces", namespaced=False),
    Kind("v1", "ServiceAccount", "serviceaccounts"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "Service", "services"),
    Kind("v1", "Pod", "pods"),
    Kind("v1", "Event", "events"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("apps/v1", "ReplicaSet", "replicasets"),
    Kind("apps/v1", "DaemonSet", "daemonsets"),
    Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets"),
    Kind("batch/v1", "Job", "jobs"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    Kind("monitoring.coreos.com/v1", "PrometheusRule", "prometheusrules"),
]}
# Kinds `toolkit deploy` applies and therefore may prune (Jobs expire by TTL instead).
PRUNABLE = ["NetworkPolicy", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "Service",
            "Deployment", "DaemonSet", "ConfigMap", "ServiceAccount"]


class KubeError(ToolkitError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Kube:
    """The handful of verbs the toolkit uses, on plain dict objects."""

    def __init__(self, api_client) -> None:
        self.api = api_client

    def _request(self, method: str, path: str, query: dict | None = None, body=None, content_type: str | None = None,
                 raw: bool = False):
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        params = self.api.param_serialize(method, path, query_params=list((query or {}).items()), header_params=headers,
                                          body=body, auth_settings=["BearerToken"])
        try:
            response = self.api.call_api(*params, _request_timeout=30)
            response.read()
        except (HTTPError, ApiException) as exc:  # connection and TLS failures
            raise KubeError(f"cannot reach the Kubernetes API at {self.api.configuration.host}: {exc}") from None
        if response.status >= 400:
            raise KubeError(_status_message(method, path, response), response.status)
        if raw:
            return response.data.decode("utf-8", "replace")
        return json.loads(response.data) if response.data else {}

    # -- verbs
    def get(self, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self._request("GET", KINDS[kind].path(namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        query = {k: v for k, v in {"labelSelector": label_selector, "fieldSelector": field_selector}.items() if v}
        return self._request("GET", KINDS[kind].path(namespace), query).get("items", [])

    def apply(self, obj: dict, manager: str = FIELD_MANAGER, force: bool = True) -> dict:
        """Server-side apply (by default field manager `toolkit`, conflicts forced: the toolkit owns these
        fields); unknown fields are refused (fieldValidation=Strict), not silently dropped."""
        kind = KINDS[obj["kind"]]
        meta = obj["metadata"]
        query = {"fieldManager": manager, "fieldValidation": "Strict", **({"force": "true"} if force else {})}
        return self._request("PATCH", kind.path(meta.get("namespace"), meta["name"]), query, body=obj,
                             content_type="application/apply-patch+yaml")

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self._request("DELETE", KINDS[kind].path(namespace, name), {"propagationPolicy": "Background"})
        except KubeError as exc:
            if exc.status != 404:
                raise

    def pod_log(self, namespace: str, name: str, container: str | None = None, since_seconds: int | None = None) -> str:
        query = {k: v for k, v in {"container": container, "sinceSeconds": since_seconds}.items() if v}
        return self._request("GET", KINDS["Pod"].path(namespace, name) + "/log", query, raw=True)

    def proxy_json(self, path: str, body: dict | None = None) -> dict:
        """GET (or POST a JSON body) through the API server's service proxy."""
        return self._request("POST" if body is not None else "GET", path, body=body,
                             content_type="application/json" if body is not None else None)

    def events_for(self, namespace: str, kind: str, name: str) -> list[dict]:
        events = self.list("Event", namespace, field_selector=f"involvedObject.kind={kind},involvedObject.name={name}")
        return sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def _status_message(method: str, path: str, response) -> str:
    try:
        status = json.loads(response.data)
        reason = status.get("message") or status.get("reason") or response.reason
    except (ValueError, AttributeError):
        reason = response.reason
    return f"{method} {path}: HTTP {response.status}: {reason}"


def selector(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
