"""The retrain controller: the cloud's alert-driven retraining (modules/retrain_queue.py).

The AMP alert manager publishes the `retrain` route's notifications to a topic delivered into an
SQS queue; the controller (the alert receiver run with `--queue-url`, as a Deployment in the
cluster, IRSA role allowed only to consume that queue) long-polls it and hands each notification
to the same handlers the local receiver uses: `GitHubDispatch` (retrain_trigger.py), which starts
the repository's `retrain.yml` for the environment, firing alerts only, each set of alerts once,
none within the debounce of the last; the workflow's concurrency group runs one retraining per
environment at a time. A message is deleted once handled; one whose handling failed (GitHub
down) comes back after the queue's visibility timeout, and after five tries it is moved to the
dead-letter queue, where an operator sees it.

A message is the SNS envelope of the notification, which carries what the controller needs as
message attributes (alertmanager.RETRAIN_ATTRIBUTES): `status`, and `alerts`, each firing alert as
`name|fingerprint|start` separated by spaces.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable

log = logging.getLogger("toolkit.receiver")
Handler = Callable[[str, dict], None]


def notification(body: str) -> dict | None:
    """An SQS message body (the SNS envelope) as a webhook-like payload {status, alerts}; None when it is
    not a retrain notification (a subscription confirmation, a test message, anything else)."""
    try:
        envelope = json.loads(body)
    except ValueError:
        return None
    if not isinstance(envelope, dict) or envelope.get("Type") != "Notification":
        return None
    attributes = {k: (v or {}).get("Value", "") for k, v in (envelope.get("MessageAttributes") or {}).items()}
    alerts = []
    for entry in attributes.get("alerts", "").split():
        name, _, rest = entry.partition("|")
        fingerprint, _, started = rest.partition("|")
        alerts.append({"status": "firing", "labels": {"alertname": name}, "fingerprint": fingerprint, "startsAt": started})
    return {"version": "4", "status": attributes.get("status", ""), "receiver": "retrain", "alerts": alerts,
            "env": attributes.get("env", "")}


class QueueConsumer:
    """Long-polls `queue_url` and gives each retrain notification to `handler` ("retrain", payload)."""

    def __init__(self, client, queue_url: str, handler: Handler, wait_seconds: int = 20) -> None:
        self.client, self.queue_url, self.handler, self.wait_seconds = client, queue_url, handler, wait_seconds
        self.stopping = threading.Event()

    def poll_once(self) -> int:
        """One receive (up to 10 messages); returns how many were handled and deleted."""
        response = self.client.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=self.wait_seconds,
                                               MessageAttributeNames=["All"])
        handled = 0
        for message in response.get("Messages", []):
            payload = notification(message.get("Body", ""))
            try:
                if payload is not None:
                    self.handler("retrain", payload)
            except Exception:  # left in the queue: it comes back, and after enough tries goes to the dead-letter queue
                log.exception("handling a retrain notification failed; it will be retried")
                continue
            self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            handled += 1
        return handled

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # the queue unreachable for a moment: try again, without spinning
                log.exception("receiving from %s failed", self.queue_url)
                self.stopping.wait(5)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="retrain-queue", daemon=True)
        thread.start()
        return thread
