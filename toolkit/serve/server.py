"""Running the app on uvicorn, with the transport limits uvicorn does not set by itself.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) and caps a request head's size
(h11's incomplete-event limit), but a client that opens a connection and sends its headers one
byte at a time is held forever. `HeaderTimeout` gives every request head a deadline: from the
connection's start, and again after each response, a request must be complete in its headers
within `header_timeout` seconds, or the connection is closed.
"""

from __future__ import annotations

import logging

log = logging.getLogger("toolkit.serve")


class HeaderTimeout:
    """Mixin for a uvicorn HTTP protocol class (it uses its `loop`, `transport` and `cycle`)."""

    header_timeout: float = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        if self.transport.is_closing():
            return
        waiting_after = self.cycle  # a new request head replaces the cycle; the same one means none came

        def expire() -> None:
            if self.cycle is waiting_after and not self.transport.is_closing():
                log.warning("closing a connection from %s: no complete request head within %.0f s",
                            _peer(self.transport), self.header_timeout)
                self.transport.close()

        self._header_deadline = self.loop.call_later(self.header_timeout, expire)


def _peer(transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "an unknown peer"


def protocol_with_header_timeout(base: type, seconds: float) -> type:
    return type(f"HeaderTimeout{base.__name__}", (HeaderTimeout, base), {"header_timeout": seconds})


def run(app, host: str, port: int, header_timeout: float = 10.0, keep_alive: float = 5.0) -> None:
    import uvicorn
    from uvicorn.protocols.http.h11_impl import H11Protocol

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=int(keep_alive),
                http=protocol_with_header_timeout(H11Protocol, header_timeout))
