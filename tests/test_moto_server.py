"""toolkit.local.moto_server's middleware on its own (the real server: test_local_services):
which answers it keeps, how many bytes, and that it changes nothing for a request no SDK marked."""

from __future__ import annotations

from toolkit.local.moto_server import ReplayRetriedSuccess, attempt_number


class CountingApp:
    """A WSGI app answering `status` with a body naming how often it ran."""

    def __init__(self, status: str = "200 OK", size: int = 0) -> None:
        self.status, self.size, self.runs = status, size, 0

    def __call__(self, environ, start_response):
        self.runs += 1
        start_response(self.status, [("Content-Type", "text/plain")])
        return [f"run {self.runs}".encode().ljust(self.size, b".")]


def call(app, invocation: str | None = None, attempt: int = 1) -> tuple[str, bytes]:
    environ = {"REQUEST_METHOD": "POST", "HTTP_AMZ_SDK_REQUEST": f"attempt={attempt}; max=3"}
    if invocation:
        environ["HTTP_AMZ_SDK_INVOCATION_ID"] = invocation
    started = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: started.append(status)))
    return started[0], body


def test_attempt_numbers_as_sdks_send_them():
    assert attempt_number({"HTTP_AMZ_SDK_REQUEST": "attempt=3; max=25"}) == 3
    assert attempt_number({"HTTP_AMZ_SDK_REQUEST": "attempt=1"}) == 1
    assert attempt_number({}) == 1


def test_only_a_later_attempt_of_a_successful_call_is_replayed():
    app, replays = CountingApp(), []
    middleware = ReplayRetriedSuccess(app, on_replay=replays.append)
    assert call(middleware, "a") == ("200 OK", b"run 1")
    assert call(middleware, "a", attempt=2) == ("200 OK", b"run 1")  # replayed
    assert replays == ["replayed the answer (200 OK) to attempt 2 of SDK call a"]
    assert call(middleware, "a") == ("200 OK", b"run 2")  # a first attempt always runs
    assert call(middleware, None, attempt=2) == ("200 OK", b"run 3")  # unmarked: runs
    assert call(middleware, "b", attempt=2) == ("200 OK", b"run 4")  # nothing kept for it: runs
    assert app.runs == 4


def test_errors_are_never_replayed():
    app = CountingApp("404 Not Found")
    middleware = ReplayRetriedSuccess(app)
    call(middleware, "a")
    assert call(middleware, "a", attempt=2) == ("404 Not Found", b"run 2")
    app.status = "200 OK"
    assert call(middleware, "a", attempt=3) == ("200 OK", b"run 3")
    assert call(middleware, "a", attempt=4) == ("200 OK", b"run 3")


def test_it_keeps_the_newest_answers_up_to_its_byte_budget_and_no_large_one():
    app = CountingApp(size=100)
    middleware = ReplayRetriedSuccess(app, keep_bytes=250, largest=150)
    for invocation in "abc":
        call(middleware, invocation)
    assert call(middleware, "a", attempt=2)[1].startswith(b"run 4")  # evicted: 300 bytes > 250
    assert call(middleware, "c", attempt=2)[1].startswith(b"run 3")  # kept
    app.size = 200
    call(middleware, "big")
    assert call(middleware, "big", attempt=2)[1].startswith(b"run 6")  # over `largest`: never kept
