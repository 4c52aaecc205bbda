"""What a cluster needs to watch the platform: the NVIDIA DCGM exporter on the GPU pools, and, where
the cluster runs prometheus-operator, a ServiceMonitor for the serving pods and a PrometheusRule
with the same rules the other targets get (toolkit/monitoring/rules.py); the Grafana dashboard as
a ConfigMap for the Grafana sidecar.

prometheus-operator's kinds have no schema in kubernetes-validate; the tests validate them
against the operator's CRDs (tests/schemas/prometheus-operator/), unknown fields refused.
"""

from __future__ import annotations

from toolkit.config import EnvironmentConfig
from toolkit.errors import ToolkitError
from toolkit.monitoring import dashboard, rules
from toolkit.workloads.objects import ADDON_NAMESPACE, OWNER_LABEL, SERVING, gpu_node_affinity, object_meta

MONITORING_API = "monitoring.coreos.com/v1"
DCGM = "dcgm-exporter"
DCGM_PORT = 9400
# kube-prometheus-stack selects ServiceMonitors and PrometheusRules by its Helm release label.
OPERATOR_LABELS = {"release": "kube-prometheus-stack"}


def _operator_meta(config: EnvironmentConfig, name: str, namespace: str) -> dict:
    meta = object_meta(config, name, "monitoring", namespace)
    meta["labels"].update(OPERATOR_LABELS)
    return meta


def service_monitor(config: EnvironmentConfig) -> dict:
    """Scrape the serving pods' /metrics through the serving Service (job label "serving", as the rules expect)."""
    ns = config.workloads.namespace
    return {"apiVersion": MONITORING_API, "kind": "ServiceMonitor", "metadata": _operator_meta(config, SERVING, ns),
            "spec": {"jobLabel": "app.kubernetes.io/name",
                     "selector": {"matchLabels": {"app.kubernetes.io/name": SERVING, OWNER_LABEL: config.name}},
                     "namespaceSelector": {"matchNames": [ns]},
                     "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]}}


def dcgm_service_monitor(config: EnvironmentConfig) -> dict:
    return {"apiVersion": MONITORING_API, "kind": "ServiceMonitor", "metadata": _operator_meta(config, DCGM, ADDON_NAMESPACE),
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": DCGM}},
                     "namespaceSelector": {"matchNames": [ADDON_NAMESPACE]},
                     "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]}}


def prometheus_rule(config: EnvironmentConfig) -> dict:
    return {"apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": _operator_meta(config, "toolkit-serving", config.workloads.namespace),
            "spec": rules.rule_groups(config)}


def dashboard_config_map(config: EnvironmentConfig) -> dict:
    """The shipped dashboard JSON, labelled for the Grafana sidecar (grafana_dashboard: "1")."""
    path = dashboard.dashboard_file(config.name)
    if not path.exists():
        raise ToolkitError(f"no dashboard was generated for {config.name}: run `make dashboards` (it builds "
                           f"{path.name} with grafana-foundation-sdk), or set monitoring.grafana_dashboard: false.")
    meta = object_meta(config, f"toolkit-dashboard-{config.name}", "monitoring", config.workloads.namespace)
    meta["labels"]["grafana_dashboard"] = "1"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {f"toolkit-serving-{config.name}.json": path.read_text()}}


def dcgm_exporter(config: EnvironmentConfig) -> list[dict]:
    """NVIDIA DCGM exporter on every GPU node: GPU utilisation, memory, temperature, per pod. A
    DaemonSet, its Service for scraping, and a NetworkPolicy that lets only the metrics port in."""
    labels = {"app.kubernetes.io/name": DCGM}
    meta = object_meta(config, DCGM, "addon", ADDON_NAMESPACE, {
        # checkov reads these; each skip says why the exporter needs it.
        "checkov.io/skip1": "CKV_K8S_23=DCGM reads the GPUs through the driver's device files, which needs root",
        "checkov.io/skip2": "CKV_K8S_40=runs as root (see CKV_K8S_23)",
        "checkov.io/skip3": "CKV_K8S_43=upstream image by tag; set monitoring.dcgm_exporter_image to a digest mirrored in your registry",
    })
    meta["labels"].update(labels)
    probe = {"httpGet": {"path": "/health", "port": DCGM_PORT}, "periodSeconds": 10, "timeoutSeconds": 3}
    pod = {
        "priorityClassName": "system-node-critical", "automountServiceAccountToken": False,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": DCGM, "image": config.monitoring.dcgm_exporter_image, "imagePullPolicy": "Always",
            "env": [{"name": "DCGM_EXPORTER_LISTEN", "value": f":{DCGM_PORT}"}, {"name": "DCGM_EXPORTER_KUBERNETES", "value": "true"}],
            "ports": [{"name": "metrics", "containerPort": DCGM_PORT, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            "livenessProbe": {**probe, "initialDelaySeconds": 45}, "readinessProbe": probe,
            "volumeMounts": [{"name": "pod-resources", "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [{"name": "pod-resources", "hostPath": {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    affinity = gpu_node_affinity(config)
    if affinity:
        pod["affinity"] = affinity
    daemonset = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
                 "spec": {"selector": {"matchLabels": labels}, "updateStrategy": {"type": "RollingUpdate"},
                          "template": {"metadata": {"labels": dict(meta["labels"])}, "spec": pod}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": object_meta(config, DCGM, "addon", ADDON_NAMESPACE),
               "spec": {"type": "ClusterIP", "selector": labels,
                        "ports": [{"name": "metrics", "port": DCGM_PORT, "targetPort": "metrics", "protocol": "TCP"}]}}
    service["metadata"]["labels"].update(labels)
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": object_meta(config, DCGM, "addon", ADDON_NAMESPACE),
              "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress", "Egress"],
                       "ingress": [{"ports": [{"protocol": "TCP", "port": DCGM_PORT}]}], "egress": []}}
    return [daemonset, service, policy]


def observability_manifests(config: EnvironmentConfig) -> list[dict]:
    """What `deploy` applies for monitoring, as the environment's `monitoring` section asks."""
    objects: list[dict] = []
    gpu = bool(config.gpu_pools())
    if gpu:
        objects += dcgm_exporter(config)
    if config.monitoring.prometheus_operator:
        objects += [service_monitor(config), prometheus_rule(config)] + ([dcgm_service_monitor(config)] if gpu else [])
    if config.monitoring.grafana_dashboard:
        objects.append(dashboard_config_map(config))
    return objects
