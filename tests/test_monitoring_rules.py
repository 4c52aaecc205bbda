"""The alert rules under promtool (Prometheus 2.42 from Debian): `check rules` on every environment's
rule file, and `test rules` with series that make each alert fire and series that must not, on the
prod thresholds. Expected annotations are the rule's own templates with the values filled in, so a
test also checks what the alert says."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from toolkit.config import load_all_environments, load_environment
from toolkit.monitoring.rules import alerts, render

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PREDICT = 'job="serving",route="/v1/predict"'


def _series(name: str, labels: str, values: str) -> dict:
    return {"series": f"{name}{{{labels}}}", "values": values}


def _requests(status: str, per_minute: float, minutes: int = 40) -> dict:
    return _series("toolkit_http_requests_total", f'{PREDICT},status="{status}"', f"0+{per_minute}x{minutes}")


def _buckets(counts: dict[str, float], minutes: int = 30) -> list[dict]:
    """Cumulative per-minute counts by `le`."""
    return [_series("toolkit_http_request_duration_seconds_bucket", f'{PREDICT},status="200",le="{le}"', f"0+{n}x{minutes}")
            for le, n in counts.items()]


def _predictions(per_minute: dict[str, int], minutes: int = 45) -> list[dict]:
    return [_series("toolkit_predictions_total", f'job="serving",instance="a",label="{label}"', f"0+{n}x{minutes}")
            for label, n in per_minute.items()]


REFERENCE = [_series("toolkit_model_class_share_reference", f'job="serving",instance="a",label="{label}"', f"{share}x45")
             for label, share in (("0", 0.55), ("1", 0.45))]
UP = _series("up", 'job="serving",instance="a"', "1x40")
NS = 'namespace="ml-platform"'

# alert: [(series, eval time, [(labels, {template variable: text})] or [] when it must not fire)]
CASES = {
    "ServingErrorRatioHigh": [
        ([_requests("200", 60), _requests("500", 6)], "15m", [({}, {"value": "9.091%"})]),
        ([_requests("200", 60), _requests("500", 0.3)], "15m", []),  # 0.5 %: under the 1 % limit
    ],
    "ServingLatencyHigh": [
        (_buckets({"0.1": 0, "0.25": 0, "0.5": 60, "+Inf": 60}), "15m", [({}, {"value": "497.5ms"})]),
        (_buckets({"0.1": 60, "0.25": 60, "0.5": 60, "+Inf": 60}), "15m", []),
    ],
    "ServingTrafficLost": [
        ([UP], "15m", [({}, {})]),
        ([UP, _requests("200", 60)], "15m", []),
        ([_series("up", 'job="serving",instance="a"', "0x40")], "15m", []),  # down, not losing traffic: ServingNotReady's case
    ],
    "ServingRestarting": [
        ([_series("process_start_time_seconds", 'job="serving",instance="a:8080"', "100 200 300 400 500 500 500 500")],
         "7m", [({"instance": "a:8080", "job": "serving"}, {"value": "4", "labels.instance": "a:8080"})]),
        ([_series("process_start_time_seconds", 'job="serving",instance="a:8080"', "100 200 300 300 300 300 300 300")], "7m", []),
    ],
    "ServingNotReady": [
        ([_series("up", 'job="serving",instance="a:8080"', "0x10")], "6m",
         [({"instance": "a:8080", "job": "serving"}, {"labels.instance": "a:8080"})]),
        ([_series("up", 'job="serving",instance="a:8080"', "0 0 0 1 1 1 1 1 1 1")], "6m", []),
    ],
    "PredictedClassShareShifted": [
        (_predictions({"0": 10, "1": 50}) + REFERENCE, "40m",
         [({"label": "0", "retrain": "true"}, {"value": "38.33%", "labels.label": "0"}),
          ({"label": "1", "retrain": "true"}, {"value": "38.33%", "labels.label": "1"})]),
        (_predictions({"0": 33, "1": 27}) + REFERENCE, "40m", []),  # the test split's shares
        (_predictions({"0": 0, "1": 2}) + REFERENCE, "40m", []),  # too few predictions to judge
    ],
    "InputDriftDetected": [
        ([_series("toolkit_feature_psi", 'job="serving",instance="a",feature="age"', "0.5x20"),
          _series("toolkit_feature_psi", 'job="serving",instance="a",feature="chol"', "0.05x20"),
          _series("toolkit_drift_window_records", 'job="serving",instance="a"', "1000x20")], "15m",
         [({"feature": "age", "retrain": "true"}, {"value": "0.50", "labels.feature": "age"})]),
        ([_series("toolkit_feature_psi", 'job="serving",instance="a",feature="age"', "0.1x20"),
          _series("toolkit_drift_window_records", 'job="serving",instance="a"', "1000x20")], "15m", []),
        ([_series("toolkit_feature_psi", 'job="serving",instance="a",feature="age"', "0.5x20"),
          _series("toolkit_drift_window_records", 'job="serving",instance="a"', "100x20")], "15m", []),  # too few rows yet
    ],
    "OnlineAccuracyLow": [
        ([_series("toolkit_feedback_total", 'job="serving",instance="a",outcome="correct"', "0+5x80"),
          _series("toolkit_feedback_total", 'job="serving",instance="a",outcome="wrong"', "0+5x80"),
          _series("toolkit_model_test_accuracy", 'job="serving",instance="a"', "0.85x80")], "75m",
         [({"retrain": "true"}, {"value": "50%"})]),
        ([_series("toolkit_feedback_total", 'job="serving",instance="a",outcome="correct"', "0+9x80"),
          _series("toolkit_feedback_total", 'job="serving",instance="a",outcome="wrong"', "0+1x80"),
          _series("toolkit_model_test_accuracy", 'job="serving",instance="a"', "0.85x80")], "75m", []),
        ([_series("toolkit_feedback_total", 'job="serving",instance="a",outcome="correct"', "0+0.1x80"),
          _series("toolkit_feedback_total", 'job="serving",instance="a",outcome="wrong"', "0+0.1x80"),
          _series("toolkit_model_test_accuracy", 'job="serving",instance="a"', "0.85x80")], "75m", []),  # too few labels
    ],
    "TrainingJobFailed": [
        ([_series("kube_job_status_failed", f'{NS},job_name="train-prod-20261127"', "0 0 1 1")], "3m",
         [({"namespace": "ml-platform", "job_name": "train-prod-20261127"}, {"labels.job_name": "train-prod-20261127"})]),
        ([_series("kube_job_status_failed", f'{NS},job_name="train-prod-20261127"', "0 0 0 0")], "3m", []),
        ([_series("kube_job_status_failed", 'namespace="other",job_name="train-x"', "1 1 1 1")], "3m", []),
    ],
    "TrainingPodPending": [
        ([_series("kube_pod_status_phase", f'{NS},pod="train-prod-1-abc",phase="Pending"', "1x20")], "16m",
         [({"pod": "train-prod-1-abc"}, {"labels.pod": "train-prod-1-abc"})]),
        ([_series("kube_pod_status_phase", f'{NS},pod="train-prod-1-abc",phase="Pending"', "1x10 0x10")], "16m", []),
    ],
    "ServedModelTooOld": [
        ([_series("toolkit_model_created_timestamp_seconds", 'job="serving",instance="a"', "-2678400x130")], "2h",
         [({}, {"value": "31d 2h 0m 0s"})]),
        ([_series("toolkit_model_created_timestamp_seconds", 'job="serving",instance="a"', "0x130")], "2h", []),
    ],
}


def _annotations(rule: dict, values: dict[str, str]) -> dict:
    """The rule's annotation templates with `{{ $value | f }}` / `{{ $labels.x }}` filled in."""
    def fill(text: str) -> str:
        text = re.sub(r'\{\{ \$value( \| [\w "%.]+)? \}\}', lambda m: values["value"], text)
        return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: values[f"labels.{m.group(1)}"], text)
    return {key: fill(value) for key, value in rule["annotations"].items()}


def test_every_environment_rule_file_passes_promtool_check(tmp_path):
    for env, config in load_all_environments().items():
        path = tmp_path / f"{env}.yml"
        path.write_text(render(config))
        result = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and "SUCCESS: 17 rules found" in result.stdout, result.stdout + result.stderr


def test_every_alert_has_a_severity_a_summary_a_description_and_a_runbook_entry():
    readme = open("README.md").read()
    for alert in alerts(load_environment("prod")):
        rule = alert.to_rule()
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert f'<a id="{anchor}"></a>' in readme, anchor
    assert set(CASES) == {a.name for a in alerts(load_environment("prod"))}  # every alert is tested below


@pytest.mark.parametrize("alert", sorted(CASES))
def test_promtool_unit_tests_fire_and_stay_quiet(alert, tmp_path):
    rules = yaml.safe_load(render(load_environment("prod")))
    rule = next(r for g in rules["groups"] for r in g["rules"] if r.get("alert") == alert)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = []
    for series, eval_time, expected in CASES[alert]:
        exp_alerts = [{"exp_labels": {**rule["labels"], **labels}, "exp_annotations": _annotations(rule, values)}
                      for labels, values in expected]
        tests.append({"interval": "1m", "input_series": series,
                      "alert_rule_test": [{"eval_time": eval_time, "alertname": alert, "exp_alerts": exp_alerts}]})
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alertmanager_configurations_pass_amtool(tmp_path):
    from toolkit.monitoring import alertmanager

    amtool = shutil.which("amtool") or "/usr/bin/amtool"
    token = tmp_path / "receiver-token"
    token.write_text("t\n")
    for name, document in (("local", alertmanager.local_config(load_environment("local"), str(token))),
                           ("sns", alertmanager.sns_config(load_environment("prod"), "arn:aws:sns:eu-west-1:333333333333:alerts"))):
        path = tmp_path / f"{name}.yml"
        path.write_text(alertmanager.render(document))
        result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
        assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    route = alertmanager.local_config(load_environment("local"), str(token))["route"]
    assert route["routes"][0] == {"receiver": "retrain", "matchers": ["retrain=true"], "continue": True}


def test_amp_queries_are_signed_with_sigv4(monkeypatch):
    """The cloud path of `toolkit monitor`: AMP's query endpoint takes SigV4 (service "aps") requests."""
    import http.server
    import threading

    from toolkit.monitoring.query import PrometheusClient, sigv4_signer

    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.update(self.headers.items())
            seen["path"] = self.path
            body = b'{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.5"]}]}}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    config = load_environment("prod")
    client = PrometheusClient(f"http://127.0.0.1:{server.server_port}/workspaces/ws-1/", signer=sigv4_signer(config))
    try:
        assert client.scalar("toolkit:predict_requests:rate") == 0.5
    finally:
        server.shutdown()
    assert seen["path"].startswith("/workspaces/ws-1/api/v1/query?query=toolkit%3Apredict_requests%3Arate")
    assert re.match(r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/aps/aws4_request, SignedHeaders=host;x-amz-date, "
                    r"Signature=[0-9a-f]{64}$", seen["Authorization"]), seen["Authorization"]
    assert re.fullmatch(r"\d{8}T\d{6}Z", seen["X-Amz-Date"])


def test_training_gpu_utilisation_query_reads_dcgm_either_way_it_was_scraped(tmp_path):
    """promtool evaluates `toolkit monitor`'s query for the training pods' GPU utilisation: the DCGM
    exporter's per-pod labels as a ServiceMonitor scrape renames them (exported_pod) and as they are
    (pod); serving pods and other namespaces are left out."""
    from toolkit.monitoring.query import training_gpu_query

    series = [
        _series("DCGM_FI_DEV_GPU_UTIL", 'exported_namespace="ml-platform",exported_pod="train-prod-20261207-1-abcde",'
                'gpu="0",pod="dcgm-exporter-x",namespace="kube-system"', "87x5"),
        _series("DCGM_FI_DEV_GPU_UTIL", 'namespace="ml-platform",pod="retrain-prod-20261207-2-fghij",gpu="1"', "40x5"),
        _series("DCGM_FI_DEV_GPU_UTIL", 'exported_namespace="ml-platform",exported_pod="serving-7d9-xyz",gpu="2"', "99x5"),
        _series("DCGM_FI_DEV_GPU_UTIL", 'exported_namespace="other",exported_pod="train-x-1",gpu="3"', "10x5"),
    ]
    expected = [{"labels": '{gpu="0", pod="train-prod-20261207-1-abcde"}', "value": 87},
                {"labels": '{gpu="1", pod="retrain-prod-20261207-2-fghij"}', "value": 40}]
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": training_gpu_query("ml-platform"), "eval_time": "3m", "exp_samples": expected}]}]}))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
