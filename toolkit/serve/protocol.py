"""The HTTP protocol `toolkit serve` runs: uvicorn's httptools protocol with three additions.

- `HeaderTimeout`: uvicorn closes idle keep-alive connections (`timeout_keep_alive`), but a client
  that opens a connection and sends its headers one byte at a time is held forever. Every request
  head gets a deadline: from the connection's start, and again after each response, a request
  must be complete in its headers within `header_timeout` seconds, or the connection is closed.
  A request's body gets one too (`body_timeout`, from its head): a body trickled in a byte at a
  time is cut off and counted as status 408.
- `BoundedConnection`: what a connection may hold is bounded whatever the client sends or fails to
  read. At most `max_pipelined` requests wait behind the one being answered (beyond, the connection
  is closed). When a connection is lost, every request of it still open is marked disconnected (its
  answer is counted as 499 and written nowhere, where uvicorn marks only the newest) and its
  pipeline dropped; a collection is scheduled, because uvicorn's connection, cycles and callbacks
  form reference cycles that the raised collection thresholds (server.tune_gc) would otherwise
  keep, with the unread answers in their transports, for good.
- `DirectAnswers`: POST /v1/predict and /v1/feedback answered in the protocol's parser callbacks,
  without an ASGI task. On the ASGI path a small request pays for a task, an event, the receive
  and send coroutines, the middleware's closures and two socket writes (head, then body): together
  more than the model and its preprocessing (profiled with bench/serve_throughput.py, README "Benchmarks"). A direct answer is one write.

A request is answered directly only when nothing about it needs the ASGI path: a fast route's
exact path, HTTP/1.1 keep-alive, no response in flight or queued before it (pipelining keeps its
order), no Expect or Upgrade, a JSON body of declared length within the body limit, and a socket
that is not write-paused. The fast handler (serve/fast_routes.py) then answers it, with the same
request id, metrics and 500 handling as `MeasureAndLimit`. A request the handler declines (any
invalid one: the FastAPI route names the bad field) is handed to uvicorn exactly as if it had
gone that way from its head, with its body already in, and the fast route is not tried twice.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from toolkit.serve.fast_routes import DECLINED, DirectRoutes, is_json
from toolkit.serve.middleware import BODY_LATE, BODY_LATE_STATUS, CLIENT_CLOSED, CLIENT_GONE, CYCLE_KEY, STARTED_KEY, port_serves

log = logging.getLogger("toolkit.serve")


class HeaderTimeout:
    """Mixin for a uvicorn HTTP protocol class (it uses its `loop`, `transport` and `cycle`)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    _body_deadline = None
    _in_body = False

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        # A direct answer arms uvicorn's keep-alive timer in the middle of the data it was parsing;
        # a request behind it in the same data is a request, not idleness.
        self._unset_keepalive_if_required()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._in_body, self._body_started = True, self.loop.time()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Only a body still incomplete after the data that came is given a deadline (one timer per
        # slow body, none for the usual request that arrives whole).
        if self._in_body and self._body_deadline is None and not self.transport.is_closing():
            remaining = self.body_timeout - (self.loop.time() - self._body_started)
            self._body_deadline = self.loop.call_later(max(remaining, 0), self._body_late)

    def _body_late(self) -> None:
        self._body_deadline = None
        if not self._in_body or self.transport.is_closing():
            return
        log.warning("closing a connection from %s: request body not complete within %.0f s", _peer(self.transport), self.body_timeout)
        cycle = self.cycle
        if cycle.__class__ is Exchange:
            cycle.response_complete = True  # not a 499 when the connection goes
            self.direct.measure.metrics.observe(cycle.route, BODY_LATE_STATUS, time.perf_counter() - cycle.started)
        elif cycle is not None:
            cycle.scope[BODY_LATE] = True  # MeasureAndLimit counts it as 408
        self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc) -> None:
        for deadline in (getattr(self, "_header_deadline", None), self._body_deadline):
            if deadline is not None:
                deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        previous = getattr(self, "_header_deadline", None)
        if previous is not None:  # one pending timer per connection, not one per request served on it
            previous.cancel()
        if self.transport.is_closing():
            return
        waiting_after = self.cycle  # a new request head replaces the cycle; the same one means none came

        def expire() -> None:
            if self.cycle is waiting_after and not self.transport.is_closing():
                log.warning("closing a connection from %s: no complete request head within %.0f s",
                            _peer(self.transport), self.header_timeout)
                self.transport.close()

        self._header_deadline = self.loop.call_later(self.header_timeout, expire)


class BoundedConnection:
    """Mixin for uvicorn's HttpToolsProtocol: see the module's docstring."""

    max_pipelined: int = 64
    _collect_pending = False  # one scheduled collection per process at most (class attribute, set on the class)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.__class__ is not Exchange:
            cycle.scope[CYCLE_KEY] = weakref.ref(cycle)  # MeasureAndLimit: is its connection gone?
            opened = self.__dict__.setdefault("_opened", [])
            opened[:] = [c for c in opened if not c.response_complete]
            opened.append(cycle)
        if len(self.pipeline) > self.max_pipelined and not self.transport.is_closing():
            log.warning("closing a connection from %s: over %d pipelined requests waiting", _peer(self.transport), self.max_pipelined)
            self.transport.close()

    def connection_lost(self, exc) -> None:
        super().connection_lost(exc)
        for cycle in self.__dict__.pop("_opened", []):
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.scope[CLIENT_GONE] = True
                cycle.message_event.set()
        self.pipeline.clear()
        self.cycle = None
        if not BoundedConnection._collect_pending:
            BoundedConnection._collect_pending = True
            self.loop.call_later(COLLECT_AFTER, _collect)


COLLECT_AFTER = 1.0  # seconds after a lost connection: many lost at once cost one collection


def _collect() -> None:
    BoundedConnection._collect_pending = False
    gc.collect()


def _peer(transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "an unknown peer"


class _NoEvent:
    def set(self) -> None:  # uvicorn's connection_lost wakes the cycle's waiter; an Exchange has none
        pass


class Exchange:
    """A request `DirectAnswers` answers itself. It stands in the protocol's `cycle` slot, so it has
    the attributes uvicorn's protocol reads there (response_complete, disconnected, keep_alive,
    message_event)."""

    __slots__ = ("handler", "method", "route", "offered_id", "started", "headers", "chunks", "response_complete", "disconnected",
                 "keep_alive")
    message_event = _NoEvent()

    def __init__(self, handler, method: str, route: str, offered_id: bytes | None, started: float, headers: list) -> None:
        self.handler, self.method, self.route, self.offered_id, self.started = handler, method, route, offered_id, started
        self.headers = headers
        self.chunks: list[bytes] = []
        self.response_complete = self.disconnected = False
        self.keep_alive = True  # uvicorn's shutdown() clears it: answer, then close


class DirectAnswers:
    """Mixin for uvicorn's HttpToolsProtocol (it uses its parser, url, headers, cycle, pipeline, flow,
    scope and server_state): see the module's docstring."""

    direct: DirectRoutes  # set by protocol_class

    def on_headers_complete(self) -> None:
        exchange = self._direct_exchange()
        if exchange is None:
            super().on_headers_complete()
        else:
            self.cycle = exchange

    def on_body(self, body: bytes) -> None:
        if self.cycle.__class__ is Exchange:
            self.cycle.chunks.append(body)  # at most Content-Length bytes in all, which is within the limit
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.cycle.__class__ is Exchange:
            self._answer(self.cycle)
        else:
            super().on_message_complete()

    def connection_lost(self, exc) -> None:
        exchange = self.cycle
        if exchange.__class__ is Exchange and not exchange.response_complete:  # gone mid-body: 499, as on the ASGI path
            self._observe(exchange, CLIENT_CLOSED)
        super().connection_lost(exc)

    def _direct_exchange(self) -> Exchange | None:
        parser, method = self.parser, self.parser.get_method()
        direct = self.direct
        handler = direct.handlers.get((method, self.url))
        if handler is None or (direct.feedback_port is not None and not port_serves(direct.feedback_port, (self.server or (None, None))[1],
                                                                                       self.url.decode("latin-1"))):
            return None
        cycle = self.cycle
        if (cycle is not None and not cycle.response_complete) or self.pipeline or self.flow.write_paused \
                or self.expect_100_continue or self.limit_concurrency is not None:
            return None
        if parser.get_http_version() != "1.1" or not parser.should_keep_alive() or parser.should_upgrade():
            return None
        length = offered_id = None
        for name, value in self.headers:
            if name == b"content-length":
                length = value
            elif name == b"x-request-id":
                offered_id = value
            elif name == b"transfer-encoding":
                return None
        if length is None or not length.isdigit() or int(length) > self.direct.measure.max_body_bytes or not is_json(self.headers):
            return None  # the ASGI path reads chunked bodies, and answers 413 and 415
        return Exchange(handler, method.decode("ascii"), self.url.decode("ascii"), offered_id, time.perf_counter(), self.headers)

    def _answer(self, exchange: Exchange) -> None:
        body = b"".join(exchange.chunks)
        exchange.chunks = []
        measure = self.direct.measure
        try:
            answer = exchange.handler(body, exchange.headers)
        except Exception as exc:  # any bug, by design: a logged 500, as MeasureAndLimit answers on the ASGI path
            request_id = measure.request_id(exchange.offered_id)
            self._respond(exchange, 500, measure.failed(request_id, exchange.method, exchange.route, exc), request_id)
            return
        if answer is None:
            self._hand_over(exchange, body)
            return
        status, content = answer
        self._respond(exchange, status, content, measure.request_id(exchange.offered_id))

    def _respond(self, exchange: Exchange, status: int, content: bytes, request_id: str) -> None:
        if self.transport.is_closing():  # the client is gone (or the connection is being cut): nothing to write to
            exchange.response_complete = True
            self._observe(exchange, CLIENT_CLOSED)
            return
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:  # date, server
            head += (name, b": ", value, b"\r\n")
        head += (b"content-type: application/json\r\ncontent-length: ", str(len(content)).encode(),
                 b"\r\nx-request-id: ", request_id.encode(), b"\r\n")
        if not exchange.keep_alive:
            head.append(b"connection: close\r\n")
        head += (b"\r\n", content)
        self.transport.write(b"".join(head))  # one write for head and body
        exchange.response_complete = True
        self._observe(exchange, status)
        if not exchange.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _observe(self, exchange: Exchange, status: int) -> None:
        self.direct.measure.metrics.observe(exchange.route, status, time.perf_counter() - exchange.started)

    def _hand_over(self, exchange: Exchange, body: bytes) -> None:
        """To uvicorn and the ASGI app, as if the request had gone that way from its head: the cycle
        and its task are made now, with the whole body already received."""
        self.cycle = None
        self.scope[DECLINED] = True
        self.scope[STARTED_KEY] = exchange.started
        super().on_headers_complete()
        super().on_body(body)
        super().on_message_complete()


def protocol_class(base: type, header_timeout: float, direct: DirectRoutes | None, body_timeout: float = 30.0) -> type:
    """`base` (uvicorn's HttpToolsProtocol) with the deadlines, bounded connections and, given `direct`,
    direct answers (HeaderTimeout first: it sees every request head, direct or not)."""
    mixins = (HeaderTimeout, DirectAnswers, BoundedConnection) if direct is not None else (HeaderTimeout, BoundedConnection)
    return type(f"Toolkit{base.__name__}", (*mixins, base), {"header_timeout": header_timeout, "body_timeout": body_timeout,
                                                             "direct": direct})
