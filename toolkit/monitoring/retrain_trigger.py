"""What the alert receiver does with notifications for the `retrain` receiver.

`RetrainRunner` (the local environment) starts the retraining command (`toolkit retrain --env ENV`):
  - only for firing notifications (a resolved one starts nothing);
  - one run at a time: a notification while a run is going is recorded as skipped;
  - debounced: none within `debounce_seconds` of the last start;
  - idempotent: Alertmanager repeats a notification (repeat_interval, retries, a restarted
    receiver) with the same alerts and the same `startsAt`; a set of alerts that already started
    a run never starts another, even across restarts of the receiver (the runs file is the memory).
Every decision and every run (start, exit code, seconds, log file) is a JSON line in `runs.jsonl`.

`GitHubDispatch` (the cloud environments' CI) forwards the same notifications as a
`repository_dispatch` event of type `retrain` to a repository, whose `retrain.yml` workflow runs
`make retrain ENV=…` (one at a time per environment: its concurrency group); each set of alerts
once, none within `debounce_seconds` of the last. The token comes from an environment variable or
a mounted file (a Kubernetes Secret), read at each dispatch, never from a flag. A dispatch that
fails raises (the queue keeps the notification).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger("toolkit.receiver")


def alerts_key(payload: dict) -> str:
    """The identity of a notification's firing alerts: their fingerprints and start times."""
    firing = sorted((a.get("fingerprint") or json.dumps(a.get("labels", {}), sort_keys=True), a.get("startsAt", ""))
                    for a in payload.get("alerts", []) if a.get("status") == "firing")
    return hashlib.sha256(json.dumps(firing).encode()).hexdigest()[:16]


def alert_names(payload: dict) -> list[str]:
    return sorted({a.get("labels", {}).get("alertname", "?") for a in payload.get("alerts", []) if a.get("status") == "firing"})


class RetrainRunner:
    def __init__(self, command: list[str], state_dir: Path, debounce_seconds: float, env: dict[str, str] | None = None) -> None:
        self.command, self.state_dir, self.debounce_seconds, self.env = command, state_dir, debounce_seconds, env
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.runs_file = state_dir / "runs.jsonl"
        self.lock = threading.Lock()
        self.process: subprocess.Popen | None = None
        history = read_runs(self.runs_file)
        self.seen = {r["key"] for r in history if r.get("event") == "started"}
        starts = [r["time"] for r in history if r.get("event") == "started"]
        self.last_start = max(starts) if starts else 0.0

    def __call__(self, receiver: str, payload: dict) -> None:
        if payload.get("status") != "firing" or not alert_names(payload):
            return
        key, names = alerts_key(payload), alert_names(payload)
        with self.lock:
            now = time.time()
            if self.process is not None and self.process.poll() is None:
                reason = f"a retraining is running (pid {self.process.pid})"
            elif key in self.seen:
                reason = "these alerts already started a retraining"
            elif now - self.last_start < self.debounce_seconds:
                reason = f"debounced: the last retraining started {now - self.last_start:.0f} s ago (< {self.debounce_seconds:.0f} s)"
            else:
                self._start(key, names, now)
                return
        self._record({"event": "skipped", "key": key, "alerts": names, "reason": reason})
        log.info("retrain not started for %s: %s", names, reason)

    def _start(self, key: str, names: list[str], now: float) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        log_path = self.state_dir / f"retrain-{stamp}.log"
        with open(log_path, "ab") as handle:
            self.process = subprocess.Popen(self.command, stdout=handle, stderr=subprocess.STDOUT, env=self.env,
                                            start_new_session=True)
        self.seen.add(key)
        self.last_start = now
        self._record({"event": "started", "time": now, "key": key, "alerts": names, "pid": self.process.pid,
                      "command": self.command, "log": str(log_path)})
        log.info("retrain started for %s (pid %d, log %s)", names, self.process.pid, log_path)
        threading.Thread(target=self._wait, args=(self.process, key, now), daemon=True).start()

    def _wait(self, process: subprocess.Popen, key: str, started: float) -> None:
        code = process.wait()
        self._record({"event": "finished", "key": key, "pid": process.pid, "exit_code": code,
                      "seconds": round(time.time() - started, 1)})
        log.info("retrain pid %d finished with exit code %d", process.pid, code)

    def _record(self, line: dict) -> None:
        line.setdefault("time", time.time())
        with open(self.runs_file, "a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")

    def wait(self, timeout: float | None = None) -> int | None:
        """The running retraining's exit code once it ends (tests, shutdown); None when none ran."""
        return self.process.wait(timeout) if self.process is not None else None


def read_runs(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


class GitHubDispatch:
    """POST /repos/{repository}/dispatches {"event_type": "retrain", "client_payload": {...}}."""

    def __init__(self, repository: str, token_env: str, env: str, api_url: str = "https://api.github.com",
                 debounce_seconds: float = 0.0, token_file: Path | None = None) -> None:
        self.repository, self.token_env, self.env, self.api_url = repository, token_env, env, api_url.rstrip("/")
        self.token_file = token_file
        self.debounce_seconds, self.last_sent = debounce_seconds, 0.0
        self.sent: set[str] = set()

    def __call__(self, receiver: str, payload: dict) -> None:
        if payload.get("status") != "firing" or not alert_names(payload):
            return
        key = alerts_key(payload)
        if key in self.sent:
            return
        if time.time() - self.last_sent < self.debounce_seconds:
            log.info("retrain alerts %s not forwarded: debounced (the last dispatch was %.0f s ago)", alert_names(payload),
                     time.time() - self.last_sent)
            return
        token = self.token_file.read_text().strip() if self.token_file else os.environ.get(self.token_env)
        if not token:
            where = self.token_file or f"${self.token_env}"
            raise RuntimeError(f"retrain alerts {alert_names(payload)} not forwarded to {self.repository}: no token in {where}")
        body = json.dumps({"event_type": "retrain",
                           "client_payload": {"env": self.env, "alerts": alert_names(payload), "key": key}}).encode()
        request = urllib.request.Request(f"{self.api_url}/repos/{self.repository}/dispatches", body, method="POST", headers={
            "Accept": "application/vnd.github+json", "Authorization": f"Bearer {token}",
            "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"repository_dispatch to {self.repository} answered {exc.code}: "
                               f"{exc.read()[:300].decode(errors='replace')}") from None
        except OSError as exc:
            raise RuntimeError(f"repository_dispatch to {self.repository} failed: {exc}") from None
        self.sent.add(key)
        self.last_sent = time.time()
        log.info("retrain alerts %s forwarded to %s (HTTP %d)", alert_names(payload), self.repository, status)
