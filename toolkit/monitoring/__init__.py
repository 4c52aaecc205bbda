"""Monitoring: the alert rules, the Alertmanager routing, the dashboard, the alert receiver and the Prometheus query client."""
