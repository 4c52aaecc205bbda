"""The alert receiver's retraining hook, in a real receiver process: firing retrain alerts start the
command once (one at a time, debounced, idempotent on repeats and across receiver restarts); resolved
ones start nothing; forwarding to GitHub sends one repository_dispatch with the token from the environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, wait_ready, wait_until
from toolkit.monitoring.retrain_trigger import read_runs


def _payload(status: str, starts_at: str = "2026-11-27T10:00:00Z", name: str = "InputDriftDetected") -> dict:
    alert = {"status": status, "labels": {"alertname": name, "retrain": "true", "env": "local"}, "annotations": {},
             "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"{name}-fp"}
    return {"version": "4", "status": status, "receiver": "retrain", "groupKey": "{}:{alertname=\"%s\"}" % name, "alerts": [alert]}


RECEIVER_TOKEN = "receiver-token-for-tests"


def _notify(port: int, payload: dict) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/alerts/retrain", json.dumps(payload).encode(),
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {RECEIVER_TOKEN}"})
    assert urllib.request.urlopen(request, timeout=5).status == 200


def _start_receiver(tmp_path, *extra: str, env: dict | None = None):
    port = free_port()
    token_file = tmp_path / "receiver.token"
    token_file.write_text(RECEIVER_TOKEN + "\n")
    process = subprocess.Popen([sys.executable, "-m", "toolkit.monitoring.receiver", "--port", str(port),
                                "--out", str(tmp_path / "notifications.jsonl"), "--token-file", str(token_file), *extra],
                               env=env or os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(f"http://127.0.0.1:{port}/healthz")
    return port, process


@pytest.fixture
def runner(tmp_path):
    """A receiver whose retraining command appends a line to runs.txt and takes 1.5 s."""
    marker = tmp_path / "runs.txt"
    command = f"sh -c 'echo run >> {marker}; sleep 1.5'"
    state = tmp_path / "retrain"
    started = []

    def start(debounce: str = "0"):
        port, process = _start_receiver(tmp_path, "--retrain-command", command, "--retrain-state", str(state),
                                        "--retrain-debounce", debounce)
        started.append(process)
        return port

    yield start, marker, state / "runs.jsonl"
    for process in started:
        process.terminate()
        process.wait(10)


def _count(marker) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def test_firing_retrain_alert_starts_one_run_and_repeats_start_none(runner):
    start, marker, runs = runner
    port = start()
    _notify(port, _payload("firing"))
    _notify(port, _payload("firing"))  # Alertmanager's repeat while the run is going
    wait_until("a finished retraining run", lambda: any(r["event"] == "finished" for r in read_runs(runs)), timeout=10.0, interval=0.05)
    _notify(port, _payload("firing"))  # a repeat after it ended: the same alerts, the same startsAt
    _notify(port, _payload("resolved"))
    time.sleep(0.3)
    assert _count(marker) == 1
    events = read_runs(runs)
    assert [e["event"] for e in events] == ["started", "skipped", "finished", "skipped"]
    assert "running" in events[1]["reason"] and "already started" in events[3]["reason"]
    assert events[2]["exit_code"] == 0 and events[2]["seconds"] >= 1.5
    assert events[0]["alerts"] == ["InputDriftDetected"] and os.path.exists(events[0]["log"])


def test_new_alerts_start_again_unless_debounced(runner):
    start, marker, runs = runner
    port = start(debounce="3600")
    _notify(port, _payload("firing"))
    wait_until("a finished retraining run", lambda: any(r["event"] == "finished" for r in read_runs(runs)), timeout=10.0, interval=0.05)
    _notify(port, _payload("firing", starts_at="2026-11-27T11:00:00Z"))  # the alert fired again later
    time.sleep(0.3)
    assert _count(marker) == 1
    assert "debounced" in read_runs(runs)[-1]["reason"]


def test_a_restarted_receiver_remembers_what_already_ran(runner):
    start, marker, runs = runner
    port = start()
    _notify(port, _payload("firing"))
    wait_until("a finished retraining run", lambda: any(r["event"] == "finished" for r in read_runs(runs)), timeout=10.0, interval=0.05)
    port = start()  # a second receiver on the same state, as after `toolkit local down/up`
    _notify(port, _payload("firing"))
    _notify(port, _payload("firing", name="OnlineAccuracyLow"))  # other alerts: a new run
    wait_until("two retraining runs", lambda: _count(marker) == 2, timeout=10.0, interval=0.05)
    assert [e["event"] for e in read_runs(runs)][:4] == ["started", "finished", "skipped", "started"]


class _GitHub(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_retrain_alerts_are_forwarded_to_github_once_with_the_token_from_the_environment(tmp_path):
    github = ThreadingHTTPServer(("127.0.0.1", 0), _GitHub)
    _GitHub.received = []
    threading.Thread(target=github.serve_forever, daemon=True).start()
    port, process = _start_receiver(tmp_path, "--github-repository", "acme/ml-platform", "--github-token-env", "RETRAIN_TOKEN",
                                    "--github-api-url", f"http://127.0.0.1:{github.server_port}", "--env", "staging",
                                    env={**os.environ, "RETRAIN_TOKEN": "ghs_secret"})
    try:
        _notify(port, _payload("firing"))
        _notify(port, _payload("firing"))
        _notify(port, _payload("resolved"))
        wait_until("the repository dispatch", lambda: _GitHub.received, timeout=10.0, interval=0.05)
        time.sleep(0.3)
    finally:
        process.terminate()
        process.wait(10)
        github.shutdown()
    assert len(_GitHub.received) == 1
    sent = _GitHub.received[0]
    assert sent["path"] == "/repos/acme/ml-platform/dispatches" and sent["auth"] == "Bearer ghs_secret"
    assert sent["body"]["event_type"] == "retrain"
    assert sent["body"]["client_payload"]["env"] == "staging" and sent["body"]["client_payload"]["alerts"] == ["InputDriftDetected"]
