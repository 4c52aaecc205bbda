"""moto's server as `toolkit local up` and the tests run it, with one addition: when an AWS SDK
retries a call moto already answered with success, the retry gets that answer again instead of
running the call twice.

Why: under load, about one answer in 500 from moto's development server never reaches the
Terraform AWS provider. Its DEBUG log shows the request sent and no response received, moto's log
shows the 200, and the SDK retries (`retrying request IAM/DeleteRole, attempt 2` answered 404: the
first attempt had deleted the role). A create retried like that fails although it succeeded:
`EntityAlreadyExists: Role with name platform-local-ci-plan already exists` stopped `terraform
apply` in CI twice. AWS SDKs mark every attempt (`amz-sdk-invocation-id` is the same for all
attempts of one call, `amz-sdk-request: attempt=N` counts them), so the server can tell a retry
from a second call. Only successful answers are kept: a retry after an error (an SDK waiting out
eventual consistency, a throttle) reaches moto again, and two calls that create the same name
still get AWS's 409."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable

KEEP_BYTES = 64 << 20  # the newest answers up to this many bytes (an apply of the local stack: ~450 calls, ~2 MB)
LARGEST = 1 << 20  # bytes; a larger answer (an S3 download) is not kept
_ATTEMPT = re.compile(r"attempt=(\d+)")


def attempt_number(environ: dict) -> int:
    """The SDK's attempt counter of this request (1 when it sends none)."""
    found = _ATTEMPT.search(environ.get("HTTP_AMZ_SDK_REQUEST", ""))
    return int(found.group(1)) if found else 1


class ReplayRetriedSuccess:
    """WSGI middleware: remembers each successful answer by the SDK's invocation id and gives it
    again to a later attempt of the same invocation."""

    def __init__(self, app: Callable, keep_bytes: int = KEEP_BYTES, largest: int = LARGEST,
                 on_replay: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)) -> None:
        self.app, self.keep_bytes, self.largest, self.on_replay = app, keep_bytes, largest, on_replay  # on_replay: into moto.log
        self._answers: OrderedDict[str, tuple[str, list, bytes]] = OrderedDict()
        self._kept = 0  # bytes of the bodies in _answers
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        invocation = environ.get("HTTP_AMZ_SDK_INVOCATION_ID")
        if not invocation:
            return self.app(environ, start_response)
        attempt = attempt_number(environ)
        if attempt > 1:
            with self._lock:
                answer = self._answers.get(invocation)
            if answer is not None:
                status, headers, body = answer
                self.on_replay(f"replayed the answer ({status}) to attempt {attempt} of SDK call {invocation}")
                start_response(status, headers)
                return [body]
        status, headers, body = self._answer(environ)
        if status.startswith("2") and len(body) <= self.largest:
            with self._lock:
                earlier = self._answers.pop(invocation, None)  # an attempt that succeeded after an error
                self._kept += len(body) - (len(earlier[2]) if earlier else 0)
                self._answers[invocation] = (status, headers, body)
                while self._kept > self.keep_bytes:
                    self._kept -= len(self._answers.popitem(last=False)[1][2])
        start_response(status, headers)
        return [body]

    def _answer(self, environ: dict) -> tuple[str, list, bytes]:
        """Run the app to completion: its status, headers and whole body."""
        started: dict = {}
        written: list[bytes] = []

        def start(status: str, headers: list, exc_info=None):
            started["status"], started["headers"] = status, list(headers)
            return written.append  # WSGI's legacy write()

        result = self.app(environ, start)
        try:
            written.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return started["status"], started["headers"], b"".join(written)


def main(argv: list[str] | None = None) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # what moto_server sets: moto builds some URLs from it
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True  # as moto_server sets it
    run_simple(args.host, args.port, ReplayRetriedSuccess(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
