"""What the clusters get for monitoring: ServiceMonitor and PrometheusRule against prometheus-operator's
own CRD schemas (unknown fields refused), the PromQL inside them and in the dashboard through
promtool, the DCGM exporter, the dashboard ConfigMap, and the shipped dashboards kept fresh."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from crd_schemas import closed_crd_schema

from conftest import REPO
from toolkit.config import load_all_environments, load_environment
from toolkit.images.release import Release
from toolkit.monitoring import dashboard
from toolkit.monitoring.panels import all_expressions
from toolkit.workloads.manifests import serving_manifests
from toolkit.workloads.observability import dcgm_exporter, prometheus_rule, service_monitor

SCHEMAS = Path(__file__).resolve().parent / "schemas" / "prometheus-operator"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
OUTPUTS = {"serving_role_arn": "arn:aws:iam::111111111111:role/s", "training_role_arn": "arn:aws:iam::111111111111:role/t", "bucket": "b"}
V1 = Release("registry/serving@sha256:" + "1" * 64, "v1")


def crd_schema(plural: str) -> dict:
    return closed_crd_schema(SCHEMAS / f"monitoring.coreos.com_{plural}.yaml", "v1")


def validate(obj: dict, plural: str) -> None:
    jsonschema.Draft4Validator(crd_schema(plural)).validate(obj)


@pytest.mark.parametrize("env", ["local", "dev", "staging", "prod"])
def test_service_monitor_and_prometheus_rule_pass_the_operator_crds(env):
    config = load_environment(env)
    validate(service_monitor(config), "servicemonitors")
    validate(prometheus_rule(config), "prometheusrules")


def test_a_misspelled_field_fails_the_crd_schema():
    config = load_environment("dev")
    monitor = service_monitor(config)
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        validate(monitor, "servicemonitors")
    rule = prometheus_rule(config)
    rule["spec"]["groups"][1]["rules"][0]["fore"] = "5m"
    with pytest.raises(jsonschema.ValidationError, match="fore"):
        validate(rule, "prometheusrules")


def test_operator_objects_are_rendered_only_where_the_config_asks():
    kinds = {env: {o["kind"] for o in serving_manifests(config, OUTPUTS, V1)} for env, config in load_all_environments().items()}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds["dev"]  # dev.yaml: prometheus_operator: true
    assert not {"ServiceMonitor", "PrometheusRule"} & kinds["prod"]
    for env in kinds:
        assert "DaemonSet" in kinds[env]  # device plugin and DCGM exporter (every shipped env has a GPU pool)


def test_dcgm_exporter_runs_on_the_gpu_pools_only():
    config = load_environment("prod")
    daemonset, service, policy = dcgm_exporter(config)
    pod = daemonset["spec"]["template"]["spec"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "workload", "operator": "In", "values": ["gpu-training"]}]}]
    assert pod["containers"][0]["image"] == config.monitoring.dcgm_exporter_image
    assert service["spec"]["ports"][0]["port"] == policy["spec"]["ingress"][0]["ports"][0]["port"] == 9400


def test_every_promql_expression_passes_promtool(tmp_path):
    """The rules are checked in test_monitoring_rules; here the dashboard's and the PrometheusRule's
    expressions, each as a recording rule (promtool has no offline query check)."""
    config = load_environment("prod")
    expressions = all_expressions(config) + [r["expr"] for g in prometheus_rule(config)["spec"]["groups"] for r in g["rules"]]
    rules = {"groups": [{"name": "check", "rules": [{"record": f"check:expr{i}", "expr": e} for i, e in enumerate(expressions)]}]}
    (tmp_path / "check.yml").write_text(yaml.safe_dump(rules))
    result = subprocess.run([PROMTOOL, "check", "rules", str(tmp_path / "check.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    dashboard_exprs = {t["expr"] for p in json.loads(dashboard.dashboard_file("prod").read_text())["panels"] for t in p["targets"]}
    assert dashboard_exprs == set(all_expressions(config))


def test_the_shipped_dashboards_are_fresh():
    """toolkit/monitoring/dashboards/<env>.json is what dashboard.build gives today (`make dashboards` regenerates)."""
    for env, config in load_all_environments().items():
        shipped = dashboard.dashboard_file(env).read_text()
        assert shipped == dashboard.render(config), f"{env}.json is stale: run `make dashboards`"
    titles = [p["title"] for p in json.loads(dashboard.dashboard_file("prod").read_text())["panels"]]
    for title in ("Request rate by status", "Latency p50 / p99 vs SLO", "Predictions by class", "Model version",
                  "GPU utilisation", "Firing alerts"):
        assert title in titles


def test_the_dashboard_config_map_carries_the_sidecar_label():
    config = load_environment("prod")
    [cm] = [o for o in serving_manifests(config, OUTPUTS, V1) if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["toolkit-serving-prod.json"])["uid"] == "toolkit-serving-prod"
    assert str(REPO) not in json.dumps(cm)
