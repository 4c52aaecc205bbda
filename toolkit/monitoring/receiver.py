"""The alert receiver: Alertmanager's webhook on the local environment.

Every notification (webhook payload version 4) is appended as one JSON line to the notifications
file, with the receiver it came for (`/alerts/<receiver>`) and when it arrived. Handlers can be
registered per receiver (`on_notification`): the feedback loop's retraining hook is one
(retrain_trigger.py): `--retrain-command` runs a command for the `retrain` receiver's firing
alerts, `--github-repository` forwards them to a repository's `retrain.yml` workflow.

    python -m toolkit.monitoring.receiver --port 9095 --out .local/alerts/notifications.jsonl \
        --retrain-command "toolkit retrain --env local" --retrain-debounce 60
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

log = logging.getLogger("toolkit.receiver")
MAX_BODY = 4 << 20
Handler = Callable[[str, dict], None]


class Receiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], out: Path) -> None:
        super().__init__(address, _RequestHandler)
        self.out = out
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.handlers: dict[str, list[Handler]] = {}

    def on_notification(self, receiver: str, handler: Handler) -> None:
        self.handlers.setdefault(receiver, []).append(handler)

    def record(self, receiver: str, payload: dict) -> None:
        line = {"received_at": time.time(), "receiver": receiver, "status": payload.get("status"),
                "alerts": [{k: a.get(k) for k in ("status", "labels", "annotations", "startsAt", "endsAt", "fingerprint")}
                           for a in payload.get("alerts", [])], "groupKey": payload.get("groupKey"), "version": payload.get("version")}
        with self.lock, open(self.out, "a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
        for handler in self.handlers.get(receiver, []):
            try:
                handler(receiver, payload)
            except Exception:  # a handler's failure must not lose the notification or stop the receiver; it is logged
                log.exception("handler for %s failed", receiver)


class _RequestHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self._answer(200 if self.path == "/healthz" else 404, {"status": "ok"} if self.path == "/healthz" else {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        parts = self.path.strip("/").split("/")
        length = int(self.headers.get("Content-Length") or 0)
        if len(parts) != 2 or parts[0] != "alerts" or not 0 < length <= MAX_BODY:
            self._answer(400, {"error": "POST /alerts/<receiver> with an Alertmanager webhook body"})
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400, {"error": "the body is not JSON"})
            return
        self.server.record(parts[1], payload)
        self._answer(200, {"status": "recorded"})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002  (http.server's signature)
        log.info("%s " + format, self.address_string(), *args)


def read_notifications(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m toolkit.monitoring.receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the notifications file (JSON lines)")
    parser.add_argument("--retrain-command", type=shlex.split, help="run this for the retrain receiver's firing alerts")
    parser.add_argument("--retrain-state", type=Path, help="where runs.jsonl and the run logs go (default: next to --out)")
    parser.add_argument("--retrain-debounce", type=float, default=1800.0, metavar="SECONDS",
                        help="start no retraining within this long of the last one (default 1800)")
    parser.add_argument("--github-repository", metavar="OWNER/NAME", help="forward retrain alerts as repository_dispatch events")
    parser.add_argument("--github-token-env", default="GITHUB_TOKEN", help="the environment variable holding the token")
    parser.add_argument("--github-api-url", default="https://api.github.com")
    parser.add_argument("--env", default="local", help="the environment named in forwarded events")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from toolkit.monitoring.retrain_trigger import GitHubDispatch, RetrainRunner

    receiver = Receiver((args.host, args.port), args.out)
    if args.retrain_command:
        receiver.on_notification("retrain", RetrainRunner(args.retrain_command, args.retrain_state or args.out.parent / "retrain",
                                                          args.retrain_debounce))
    if args.github_repository:
        receiver.on_notification("retrain", GitHubDispatch(args.github_repository, args.github_token_env, args.env, args.github_api_url))
    receiver.serve_forever()


if __name__ == "__main__":
    main()
