"""Alert-driven retraining in the cloud, end to end on moto: a retrain notification published to the
retrain topic the way the AMP alert manager publishes it (SNS message attributes from
alertmanager.RETRAIN_ATTRIBUTES), delivered by SNS into the SQS queue, consumed by the alert
receiver run as the cluster's controller (`--queue-url`), which dispatches retrain.yml to GitHub
(a local stand-in): once per set of firing alerts, nothing for a resolved one, and a notification
it could not dispatch stays in the queue and ends in the dead-letter queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import SERVICES, free_port, wait_ready, wait_until
from toolkit.config import load_environment
from toolkit.monitoring.alertmanager import RETRAIN_ATTRIBUTES, sns_config
from toolkit.paths import ProjectPaths

pytestmark = SERVICES  # moto


class _GitHub(BaseHTTPRequestHandler):
    received: list = []
    status = 204

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def aws(tmp_path):
    """moto with the retrain topic, queue and dead-letter queue wired as modules/retrain_queue.py wires them."""
    import boto3

    from toolkit.local.moto import start_moto, stop_moto

    endpoint = f"http://127.0.0.1:{free_port()}"
    paths = ProjectPaths(tmp_path / "moto")
    start_moto(paths, endpoint)
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "eu-west-1"}
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="eu-west-1")
    sns, sqs = session.client("sns", endpoint_url=endpoint), session.client("sqs", endpoint_url=endpoint)
    topic = sns.create_topic(Name="platform-staging-retrain")["TopicArn"]
    dead = sqs.create_queue(QueueName="platform-staging-retrain-dead-letters")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName="platform-staging-retrain", Attributes={
        "VisibilityTimeout": "1", "RedrivePolicy": json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2})})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    try:
        yield {"env": env, "sns": sns, "sqs": sqs, "topic": topic, "queue": queue, "dead": dead}
    finally:
        stop_moto(paths)


def _publish(aws, status: str, alerts: list[tuple[str, str, int]]) -> None:
    """As the alert manager's SNS notifier sends a retrain notification: its message attributes rendered
    from RETRAIN_ATTRIBUTES (status; each firing alert as name|fingerprint|start)."""
    assert set(RETRAIN_ATTRIBUTES) == {"status", "alerts"}
    rendered = {"env": "staging", "status": status, "alerts": "".join(f"{n}|{f}|{t} " for n, f, t in alerts if status == "firing")}
    aws["sns"].publish(TopicArn=aws["topic"], Message=f"[{status.upper()}] retrain", Subject="retrain",
                       MessageAttributes={k: {"DataType": "String", "StringValue": v or " "} for k, v in rendered.items()})


def _controller(aws, tmp_path, github_port: int) -> subprocess.Popen:
    token = tmp_path / "github-token"
    token.write_text("ghs_from_the_secret\n")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "toolkit.monitoring.receiver", "--port", str(port),
                                "--out", str(tmp_path / "notifications.jsonl"), "--queue-url", aws["queue"], "--env", "staging",
                                "--github-repository", "acme/ml-platform", "--github-token-file", str(token),
                                "--github-api-url", f"http://127.0.0.1:{github_port}", "--retrain-debounce", "0"],
                               env={**os.environ, **aws["env"]}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/healthz", process=process)
    return process


@pytest.fixture
def github():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHub)
    _GitHub.received, _GitHub.status = [], 204
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _waiting(aws, queue: str) -> int:
    attributes = aws["sqs"].get_queue_attributes(QueueUrl=aws[queue], AttributeNames=["ApproximateNumberOfMessages",
                                                                                       "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attributes["Attributes"].values())


def test_retrain_notifications_travel_sns_sqs_controller_github_once_each(aws, github, tmp_path):
    process = _controller(aws, tmp_path, github.server_port)
    try:
        drift = [("InputDriftDetected", "fp-drift", 1_800_000_000)]
        _publish(aws, "firing", drift)
        _publish(aws, "firing", drift)  # the alert manager repeats a notification: the same alerts
        _publish(aws, "resolved", drift)
        _publish(aws, "firing", [("OnlineAccuracyLow", "fp-accuracy", 1_800_000_100)])  # other alerts: another retraining
        wait_until("two dispatches", lambda: len(_GitHub.received) >= 2, timeout=30)
        wait_until("the queue drained", lambda: _waiting(aws, "queue") == 0, timeout=30)
    finally:
        process.terminate()
        process.wait(10)
    assert len(_GitHub.received) == 2
    first, second = _GitHub.received
    assert first["path"] == "/repos/acme/ml-platform/dispatches" and first["auth"] == "Bearer ghs_from_the_secret"
    assert first["body"]["event_type"] == "retrain" and first["body"]["client_payload"]["env"] == "staging"
    assert first["body"]["client_payload"]["alerts"] == ["InputDriftDetected"]
    assert second["body"]["client_payload"]["alerts"] == ["OnlineAccuracyLow"]
    assert _waiting(aws, "dead") == 0


def test_a_notification_that_cannot_be_dispatched_ends_in_the_dead_letter_queue(aws, github, tmp_path):
    _GitHub.status = 502  # GitHub down
    process = _controller(aws, tmp_path, github.server_port)
    try:
        _publish(aws, "firing", [("InputDriftDetected", "fp-drift", 1_800_000_000)])
        wait_until("the notification in the dead-letter queue", lambda: _waiting(aws, "dead") == 1, timeout=60)
    finally:
        process.terminate()
        process.wait(10)
    assert len(_GitHub.received) >= 2 and _waiting(aws, "queue") == 0  # tried, kept, tried again, then moved aside


def test_the_cloud_alert_manager_routes_retrain_alerts_to_their_own_topic():
    config = load_environment("staging")
    routing = sns_config(config, "arn:aws:sns:eu-west-1:222222222222:alerts", "arn:aws:sns:eu-west-1:222222222222:retrain")
    by_name = {r["name"]: r["sns_configs"][0] for r in routing["receivers"]}
    assert by_name["retrain"]["topic_arn"].endswith(":retrain") and by_name["notify"]["topic_arn"].endswith(":alerts")
    assert by_name["retrain"]["attributes"] == {"env": "staging", **RETRAIN_ATTRIBUTES}
