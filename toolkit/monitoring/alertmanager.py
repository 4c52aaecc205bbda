"""Alert routing, one tree for every environment; only the receivers differ.

    every alert ──► "notify" (grouped by alert and environment)
      ├─ retrain="true" ──► "retrain"   (and on: the retraining hook; see the feedback loop)
      └─ severity="page" ──► "page"

Locally every receiver is a webhook on the toolkit's alert receiver (receiver.py), which records
each notification; in the cloud (the AMP alert manager definition) "notify" and "page" publish to
the environment's alert topic, and "retrain" to a topic of its own, delivered into the queue the
retrain controller consumes (modules/retrain_queue.py, retrain_controller.py). Its notifications
carry what the controller needs as SNS message attributes (RETRAIN_ATTRIBUTES): plain fields, no
JSON to escape in a Go template.
"""

from __future__ import annotations

import yaml

from toolkit.config import EnvironmentConfig

RECEIVERS = ("notify", "page", "retrain")


def route(config: EnvironmentConfig, group_wait_seconds: int) -> dict:
    return {
        "receiver": "notify", "group_by": ["alertname", "env", "label", "feature"],
        "group_wait": f"{group_wait_seconds}s", "group_interval": f"{max(group_wait_seconds, 1) * 5}s",
        "repeat_interval": "4h",
        "routes": [
            {"receiver": "retrain", "matchers": ["retrain=true"], "continue": True},
            {"receiver": "page", "matchers": ["severity=page"]},
        ],
    }


def local_config(config: EnvironmentConfig, token_file: str) -> dict:
    """Alertmanager's configuration on the local environment: webhooks on the toolkit's receiver, which
    takes only requests with its token (`token_file`, read by Alertmanager as a bearer credential)."""
    base = f"http://127.0.0.1:{config.monitoring.local.receiver_port}/alerts"
    http = {"authorization": {"type": "Bearer", "credentials_file": token_file}}
    return {
        "route": route(config, config.monitoring.local.group_wait_seconds),
        "receivers": [{"name": name, "webhook_configs": [{"url": f"{base}/{name}", "send_resolved": True, "http_config": http}]}
                      for name in RECEIVERS],
    }


# The retrain notification as message attributes: status, and each firing alert as name|fingerprint|start (Unix seconds).
RETRAIN_ATTRIBUTES = {
    "status": "{{ .Status }}",
    "alerts": "{{ range .Alerts.Firing }}{{ .Labels.alertname }}|{{ .Fingerprint }}|{{ .StartsAt.Unix }} {{ end }}",
}


def sns_config(config: EnvironmentConfig, topic_arn: str, retrain_topic_arn: str | None = None) -> dict:
    """The AMP alert manager's configuration: every receiver publishes to the environment's SNS topic,
    but "retrain", which publishes to `retrain_topic_arn` (the retrain controller's queue) when given."""
    def sns(topic: str, attributes: dict) -> dict:
        return {"topic_arn": topic, "sigv4": {"region": config.aws.region}, "send_resolved": True,
                "attributes": {"env": config.name, **attributes}}

    receivers = [{"name": name, "sns_configs": [sns(topic_arn, {})]} for name in RECEIVERS if name != "retrain"]
    receivers.append({"name": "retrain", "sns_configs": [sns(retrain_topic_arn or topic_arn, RETRAIN_ATTRIBUTES)]})
    return {"route": route(config, 30), "receivers": receivers}


def render(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False)
