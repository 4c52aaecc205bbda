"""Running the app on uvicorn with our protocol (serve/protocol.py: the request-head deadline and
direct answers for the fast routes), in one process or supervised workers."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from typing import Callable

from toolkit.errors import BadInputError
from toolkit.serve.metrics import SUPERVISOR_PID_ENV

log = logging.getLogger("toolkit.serve")


def run(app, host: str, port: int, header_timeout: float = 10.0, keep_alive: float = 5.0, workers: int = 1,
        body_timeout: float = 30.0, feedback_port: int | None = None, announce: Callable[[], None] = lambda: None) -> None:
    """Serve `app` (uvicorn_config) on `port`, and on `feedback_port` too when given (the app serves
    POST /v1/feedback there only: middleware.port_serves); `workers` > 1: that many forked processes,
    each with its own sockets on the ports (supervise). `announce` is called once every port is
    bound, so nothing says "serving" about a port another process holds (that is a BadInputError)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn_config(app, host, port, header_timeout, keep_alive, body_timeout)
    ports = [port, *([feedback_port] if feedback_port else [])]
    tune_gc()
    if workers == 1:
        sockets = [_bound(config.host, p, reuse_port=False) for p in ports]
        for sock in sockets:
            sock.listen(config.backlog)
        announce()
        uvicorn.Server(config).run(sockets=sockets)
    else:
        supervise(config, workers, ports, announce)


def uvicorn_config(app, host: str, port: int, header_timeout: float = 10.0, keep_alive: float = 5.0, body_timeout: float = 30.0):
    """uvloop and httptools (h11 and asyncio's loop cost ~20 % of a small request), and our protocol:
    the header deadline and, when `app` has them (`app.direct`), direct answers for the fast routes."""
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from toolkit.serve.protocol import protocol_class

    # No proxy-headers middleware: nothing here uses the client's address, and it costs on every request.
    return uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_keep_alive=int(keep_alive), loop="uvloop",
                          http=protocol_class(HttpToolsProtocol, header_timeout, getattr(app, "direct", None), body_timeout),
                          interface="asgi3", proxy_headers=False)


def tune_gc() -> None:
    """With the app, the model and the libraries loaded: freeze them out of the collector's view (a
    full collection no longer walks them, and forked workers leave their pages shared), and collect
    the youngest generation every 10,000 allocations instead of 700. A 64-row request allocates a
    few hundred containers and the prediction log holds up to a thousand records' objects between
    encodes: with the defaults, the collector took ~35 µs of a 64-row request (bench/serve_throughput.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _bound(host: str, port: int, reuse_port: bool):
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror}; is another server running "
                            "there? Stop it, or pass another --port.") from None
    return sock


def supervise(config, workers: int, ports: list[int] | None = None, announce: Callable[[], None] = lambda: None) -> None:
    """Fork `workers` uvicorn servers and keep them running: a worker that dies is replaced and its
    metrics marked dead; SIGTERM/SIGINT stop them all gracefully. Forked after the model is loaded
    and verified, so the workers share its pages and start at once. uvicorn's own --workers would
    spawn fresh interpreters that re-import the app by name.

    Each worker listens on a socket of its own, all bound to the port with SO_REUSEPORT, so the
    kernel spreads new connections evenly over them. On one shared socket, the worker that wakes
    first took most of a burst of connections (14 of wrk's 16 in bench/serve_throughput.py), and the
    other one idled. The supervisor holds the sockets, so connections that arrive for a worker
    being replaced wait in its socket's queue for the new one."""
    import signal
    import time

    import uvicorn

    ports = ports or [config.port]
    # SO_REUSEPORT would also let another server of the same user share the port (half the requests
    # to another model): a plain bind first fails as before when anything listens there.
    for port in ports:
        _bound(config.host, port, reuse_port=False).close()
    sockets = [[_bound(config.host, port, reuse_port=True) for port in ports] for _ in range(workers)]
    for sock in (s for slot in sockets for s in slot):
        sock.listen(config.backlog)
    announce()
    children: dict[int, tuple[int, float]] = {}  # pid: (its socket, when it started)
    supervisor = os.getpid()
    stopping = False

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: default signal handling (uvicorn installs its own), then serve
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            _stop_with_parent(supervisor)
            try:
                uvicorn.Server(config).run(sockets=sockets[slot])
            finally:
                os._exit(0)
        children[pid] = (slot, time.monotonic())

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.environ[SUPERVISOR_PID_ENV] = str(supervisor)
    for slot in range(workers):
        spawn(slot)
    log.info("serving on http://%s:%d with %d workers", config.host, config.port, workers)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        child = children.pop(pid, None)
        if child is None:
            continue
        slot, started = child
        _mark_dead(pid)
        if not stopping:
            log.error("worker %d exited (%s); starting another", pid, _exit_reason(status))
            if time.monotonic() - started < 1.0:
                time.sleep(1.0)  # a worker that dies at once must not become a fork loop
            spawn(slot)
    for sock in (s for slot in sockets for s in slot):
        sock.close()


def _stop_with_parent(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when the supervisor dies, however it dies (a SIGKILL
    or the OOM killer would otherwise leave orphaned workers serving on the port). Linux only."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def _exit_reason(status: int) -> str:
    return f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"code {os.WEXITSTATUS(status)}"
