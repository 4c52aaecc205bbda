"""The alert receiver: Alertmanager's webhook on the local environment, and in the cloud the retrain
controller (`--queue-url`: the retrain notifications from the environment's SQS queue,
retrain_controller.py, handled exactly as webhook notifications are).

Only Alertmanager may post: a request needs `Authorization: Bearer <token>` with the receiver's
token (from `--token-file`, which Alertmanager's webhook reads as its credentials file; locally
generated under `.local/alert-receiver/`), compared in constant time, and a body declared as
`application/json`; anything else is refused (401, 403, 415) before it is read or acted on, so
neither another local process nor a web page's form post can start a retraining.

Every notification (webhook payload version 4) is appended as one JSON line to the notifications
file, with the receiver it came for (`/alerts/<receiver>`) and when it arrived. Handlers can be
registered per receiver (`on_notification`): the feedback loop's retraining hook is one
(retrain_trigger.py): `--retrain-command` runs a command for the `retrain` receiver's firing
alerts, `--github-repository` forwards them to a repository's `retrain.yml` workflow.

    python -m toolkit.monitoring.receiver --port 9095 --out .local/alerts/notifications.jsonl \
        --token-file .local/alert-receiver/token --retrain-command "toolkit retrain --env local" --retrain-debounce 60
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
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

    def __init__(self, address: tuple[str, int], out: Path, token: str | None) -> None:
        """`token`: what a webhook request must carry; None: no webhook is taken (the queue is the only source)."""
        super().__init__(address, _RequestHandler)
        self.out, self.token = out, token.encode() if token else None
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.handlers: dict[str, list[Handler]] = {}

    def on_notification(self, receiver: str, handler: Handler) -> None:
        self.handlers.setdefault(receiver, []).append(handler)

    def record(self, receiver: str, payload: dict, raise_errors: bool = False) -> None:
        """Append the notification to the file and run the receiver's handlers; `raise_errors`: a handler's
        failure is raised (the queue then keeps the message), else logged (a webhook is answered anyway)."""
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
                if raise_errors:
                    raise


class _RequestHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        self._answer(200 if self.path == "/healthz" else 404, {"status": "ok"} if self.path == "/healthz" else {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        if self.server.token is None:
            self._answer(403, {"error": "this receiver takes notifications from its queue only"}, close=True)
            return
        scheme, _, offered = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not offered.strip():
            self._answer(401, {"error": "Authorization: Bearer <the receiver's token> is required"}, close=True)
            return
        if not hmac.compare_digest(offered.strip().encode(), self.server.token):
            self._answer(403, {"error": "not the receiver's token"}, close=True)
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip().lower() != "application/json":
            self._answer(415, {"error": "the body must be declared as Content-Type: application/json"}, close=True)
            return
        parts = self.path.strip("/").split("/")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if len(parts) != 2 or parts[0] != "alerts" or not 0 < length <= MAX_BODY:
            self._answer(400, {"error": "POST /alerts/<receiver> with an Alertmanager webhook body"}, close=True)
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400, {"error": "the body is not JSON"})
            return
        if not isinstance(payload, dict):
            self._answer(400, {"error": "the body is not an Alertmanager webhook payload (an object)"})
            return
        self.server.record(parts[1], payload)
        self._answer(200, {"status": "recorded"})

    def _answer(self, status: int, body: dict, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:  # the body was not read: the connection cannot carry another request
            self.send_header("Connection", "close")
            self.close_connection = True
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
    parser.add_argument("--token-file", type=Path, help="the token every webhook request must carry as a bearer token")
    parser.add_argument("--queue-url", help="also (or only) take retrain notifications from this SQS queue (the cloud's controller)")
    parser.add_argument("--region", help="the queue's region (default: $AWS_REGION)")
    parser.add_argument("--retrain-command", type=shlex.split, help="run this for the retrain receiver's firing alerts")
    parser.add_argument("--retrain-state", type=Path, help="where runs.jsonl and the run logs go (default: next to --out)")
    parser.add_argument("--retrain-debounce", type=float, default=1800.0, metavar="SECONDS",
                        help="start no retraining within this long of the last one (default 1800)")
    parser.add_argument("--github-repository", metavar="OWNER/NAME", help="forward retrain alerts as repository_dispatch events")
    parser.add_argument("--github-token-env", default="GITHUB_TOKEN", help="the environment variable holding the token")
    parser.add_argument("--github-token-file", type=Path, help="a file holding the token instead (a mounted Secret)")
    parser.add_argument("--github-api-url", default="https://api.github.com")
    parser.add_argument("--env", default="local", help="the environment named in forwarded events")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from toolkit.monitoring.retrain_trigger import GitHubDispatch, RetrainRunner

    if args.token_file is None and args.queue_url is None:
        parser.error("give --token-file (webhooks from Alertmanager) or --queue-url (notifications from SQS), or both")
    token = None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            parser.error(f"cannot read the token file {args.token_file}: {exc.strerror}")
        if not token:
            parser.error(f"the token file {args.token_file} is empty")
    receiver = Receiver((args.host, args.port), args.out, token)
    if args.retrain_command:
        receiver.on_notification("retrain", RetrainRunner(args.retrain_command, args.retrain_state or args.out.parent / "retrain",
                                                          args.retrain_debounce))
    if args.github_repository:
        receiver.on_notification("retrain", GitHubDispatch(args.github_repository, args.github_token_env, args.env, args.github_api_url,
                                                           debounce_seconds=args.retrain_debounce, token_file=args.github_token_file))
    if args.queue_url:
        import boto3

        from toolkit.monitoring.retrain_controller import QueueConsumer

        QueueConsumer(boto3.client("sqs", region_name=args.region or os.environ.get("AWS_REGION")), args.queue_url,
                      lambda name, payload: receiver.record(name, payload, raise_errors=True)).start()
    receiver.serve_forever()


if __name__ == "__main__":
    main()
