"""The local Prometheus's configuration: scrape the local serving endpoint, evaluate the rules,
send alerts to the local Alertmanager."""

from __future__ import annotations

import yaml

from toolkit.config import EnvironmentConfig

RULES_FILE = "rules.yml"


def local_config(config: EnvironmentConfig) -> dict:
    local = config.monitoring.local
    interval = f"{local.scrape_interval_seconds}s"
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": f"{min(local.scrape_interval_seconds, 10)}s",
                   "evaluation_interval": f"{config.monitoring.evaluation_interval_seconds}s",
                   "external_labels": {"env": config.name}},
        "rule_files": [RULES_FILE],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{local.alertmanager_port}"]}]}]},
        "scrape_configs": [
            {"job_name": "serving", "static_configs": [{"targets": [f"127.0.0.1:{config.serving.port}"]}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{local.prometheus_port}"]}]},
        ],
    }


def render(document: dict) -> str:
    return yaml.safe_dump(document, sort_keys=False)
