"""The server's outermost ASGI layer: limits, request ids, outcomes and metrics for every request.

Pure ASGI (BaseHTTPMiddleware costs ~2x here). For each request it
- gives it an id (the client's `X-Request-ID` when it is a sane token, else a new one), returned
  in the response headers and named in every log line about it;
- counts body bytes as they arrive and answers 413 as soon as the limit is passed, whatever
  the framing (Content-Length or chunked): memory stays bounded by the limit;
- records count and latency by route template (docs routes included; a path no route knows is
  "unmatched") and status; a client that disconnects before the answer is status 499, not a
  server error;
- turns an unexpected exception into a 500 with one log line (request id, route, exception);
- with a feedback port (`serving.feedback_port`), answers 404 to POST /v1/feedback on any other
  port and to anything but it (and the probes) on that one, so the predict port can be exposed
  without the endpoint that labels predictions.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import time
import uuid

from starlette.requests import ClientDisconnect
from starlette.routing import Match

from toolkit.serve.metrics import ServerMetrics

log = logging.getLogger("toolkit.serve")
CLIENT_CLOSED = 499  # nginx's code for "client closed the request"; never sent, only counted
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
REQUEST_ID_KEY = "toolkit.request_id"  # in the ASGI scope, for the app's 500 answer
STARTED_KEY = "toolkit.started"  # in the ASGI scope: when the request's head was complete, if earlier than the app's call
CYCLE_KEY = "toolkit.cycle"  # in the ASGI scope: a weak reference to uvicorn's cycle (serve/protocol.py), to see a closed connection
CLIENT_GONE = "toolkit.client_gone"  # in the ASGI scope: its connection was lost before the answer was complete
BODY_LATE = "toolkit.body_late"  # in the ASGI scope: the body did not arrive within the body deadline
BODY_LATE_STATUS = 408


class BodyTooLarge(Exception):
    pass


class ClientGone(BaseException):
    """The client is gone: the request ends here, as a 499. A BaseException, so that no framework
    layer's `except Exception` takes it for an error and tries to answer a 500 on a dead connection."""


def problem_body(status: int, loc: list, message: str, kind: str) -> bytes:
    return json.dumps({"detail": [{"loc": loc, "msg": message, "type": kind}]}).encode()


async def send_problem(send, status: int, body: bytes, close: bool = False) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body is not read: the connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


FEEDBACK_PATH = "/v1/feedback"
PROBES = ("/healthz", "/readyz")


def port_serves(feedback_port: int | None, port: int | None, path: str) -> bool:
    """Whether a request for `path` that came on `port` is served there (see the module's docstring)."""
    if feedback_port is None:
        return True
    return path in PROBES or (path == FEEDBACK_PATH) == (port == feedback_port)


class MeasureAndLimit:
    def __init__(self, app, metrics: ServerMetrics, max_body_bytes: int, routes=None, feedback_port: int | None = None) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes
        self.feedback_port = feedback_port
        self.routes = routes  # the router's routes, to name each request's route template
        self._templates: dict[tuple[str, str], str] = {}
        # Request ids: a random prefix per process and a counter (unique, and no uuid4 per request).
        prefix, counter = uuid.uuid4().hex[:16], itertools.count()
        self._new_id = lambda: f"{prefix}{next(counter):016x}"

    def request_id(self, offered: bytes | None) -> str:
        """The client's X-Request-ID when it is a sane token, else a new one."""
        text = offered.decode("latin-1") if offered else ""
        return text if _REQUEST_ID.match(text) else self._new_id()

    @staticmethod
    def failed(request_id: str, method: str, path: str, exc: Exception) -> bytes:
        """Log a request's unexpected exception in one line and return the 500's body."""
        log.error("request %s %s %s failed: %s: %s", request_id, method, path, type(exc).__name__, exc,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        return problem_body(500, [], f"internal error (request id {request_id})", "internal")

    def route_template(self, scope) -> str:
        key = (scope["method"], scope["path"])
        template = self._templates.get(key)
        if template is None:
            template = "unmatched"
            for route in self.routes or []:
                match, _ = route.matches(scope)
                if match is not Match.NONE:  # FULL, or PARTIAL: the path matches, the method does not (a 405)
                    template = route.path
                    break
            if template != "unmatched":  # unmatched paths are not cached: a scan cannot grow the cache
                self._templates[key] = template
        return template

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope.get(STARTED_KEY) or time.perf_counter()
        headers = dict(scope["headers"])
        request_id = self.request_id(headers.get(b"x-request-id"))
        scope[REQUEST_ID_KEY] = request_id
        state = {"status": None, "received": 0}

        async def counting_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_body_bytes:
                    raise BodyTooLarge
            elif message["type"] == "http.disconnect":
                raise ClientGone
            return message

        cycle = scope.get(CYCLE_KEY)

        async def send_with_id(message) -> None:
            connection = cycle() if cycle is not None else None
            if connection is not None and connection.transport.is_closing():  # closed, and uvicorn not told yet
                connection.disconnected = True
                raise ClientGone
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                state["delivered"] = not scope.get(CLIENT_GONE)

        try:
            if self.feedback_port is not None and not port_serves(self.feedback_port, (scope.get("server") or (None, None))[1],
                                                                  scope["path"]):
                where = "only on the feedback port" if scope["path"] == FEEDBACK_PATH else "on the predict port"
                await send_problem(send_with_id, 404, problem_body(404, ["path"], f"{scope['path']} is served {where}", "not_found"))
                return
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                raise BodyTooLarge
            await self.app(scope, counting_receive, send_with_id)
        except BodyTooLarge:
            if state["status"] is None:
                body = problem_body(413, ["body"], f"body is over the {self.max_body_bytes}-byte limit", "too_large")
                await send_problem(send_with_id, 413, body, close=True)
        except (ClientGone, ClientDisconnect):
            state["status"] = state["status"] or CLIENT_CLOSED
        except Exception as exc:  # any bug, by design: it must not take the server down; a counted, logged 500
            body = self.failed(request_id, scope["method"], scope["path"], exc)
            state["logged"] = True
            if state["status"] is None:
                await send_problem(send_with_id, 500, body)
        finally:
            status = state["status"] or CLIENT_CLOSED
            if scope.get(BODY_LATE):
                status = BODY_LATE_STATUS
            elif scope.get(CLIENT_GONE) and not state.get("delivered"):
                status = CLIENT_CLOSED
            self.metrics.observe(self.route_template(scope), status, time.perf_counter() - started)
            if status >= 500 and not state.get("logged"):  # a 5xx the app answered itself
                log.error("request %s %s %s answered %d", request_id, scope["method"], scope["path"], status)
