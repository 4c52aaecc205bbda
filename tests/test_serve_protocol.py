"""Direct answers (toolkit/serve/protocol.py): the fast routes answered in uvicorn's protocol, before
any ASGI. Real uvicorn on a real socket, in a thread of the test process, with the config `toolkit
serve` runs, so the test can see which requests reached the ASGI app and can break the model."""

from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace

import pytest

from conftest import HttpConnection, metric_sum, uvicorn_in_thread, wait_until

MAX_BODY = 8 * 1024


@pytest.fixture
def served(model_dir):
    """The app under uvicorn (serve/server.py's uvicorn_config), and the paths of the POST requests
    that reached its ASGI app."""
    from toolkit.serve.app import create_app

    app = create_app(model_dir, max_body_bytes=MAX_BODY)
    features = app.state.model.preprocessor.columns
    with uvicorn_in_thread(app) as (port, server, reached_asgi):
        yield SimpleNamespace(port=port, server=server, reached_asgi=reached_asgi,
                              valid=json.dumps({"records": [{name: 1.0 for name in features}]}).encode())


def post(body: bytes, path: str = "/v1/predict", extra: str = "", version: str = "1.1") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{extra}\r\n").encode() + body


def metric(port: int, series: str) -> float:
    return metric_sum(f"http://127.0.0.1:{port}", series)


def test_a_valid_request_is_answered_in_one_write_without_the_asgi_app(served):
    connection = HttpConnection(served.port)
    for _ in range(3):
        connection.send(post(served.valid))
        status, headers, body = connection.response()
        assert status == 200 and body.startswith(b'{"model_version"')
        assert headers["content-type"] == "application/json" and "date" in headers and headers["server"] == "uvicorn"
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    assert served.reached_asgi == []
    # The same request on the ASGI path (Connection: close is not for direct answers) answers the same.
    connection.send(post(served.valid, extra="Connection: close\r\n"))
    status, asgi_headers, asgi_body = connection.response()
    assert (status, json.loads(asgi_body)) == (200, json.loads(body))
    assert set(asgi_headers) - {"connection"} == set(headers) and asgi_headers["connection"] == "close"
    assert served.reached_asgi == ["/v1/predict"]
    assert connection.closed_by_server()
    assert metric(served.port, 'toolkit_http_requests_total{route="/v1/predict",status="200"}') == 4


def test_a_request_the_fast_route_declines_is_handed_to_fastapi_once(served, monkeypatch):
    from toolkit.serve.fast_routes import PredictHandler

    calls = []
    original = PredictHandler.__call__
    monkeypatch.setattr(PredictHandler, "__call__", lambda self, body, headers=(): calls.append(body) or original(self, body, headers))
    connection = HttpConnection(served.port)
    connection.send(post(b'{"records": [{"age": 1}]}', extra="X-Request-ID: bad-1\r\n"))
    status, headers, body = connection.response()
    assert status == 422 and headers["x-request-id"] == "bad-1"
    assert "missing feature(s)" in json.loads(body)["detail"][0]["msg"]
    assert len(calls) == 1 and served.reached_asgi == ["/v1/predict"]
    # The connection goes on, and the next valid request is answered directly again.
    connection.send(post(served.valid))
    assert connection.response()[0] == 200 and served.reached_asgi == ["/v1/predict"]
    assert metric(served.port, 'toolkit_http_requests_total{route="/v1/predict",status="422"}') == 1


def test_pipelined_requests_are_answered_in_order(served):
    """Direct answers, a hand-over and a framework route in one burst: each in its turn."""
    connection = HttpConnection(served.port)
    burst = [
        post(served.valid, extra="X-Request-ID: r1\r\n"),
        post(b'{"records": []}', extra="X-Request-ID: r2\r\n"),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-ID: r3\r\n\r\n",
        post(served.valid, extra="X-Request-ID: r4\r\n"),
        post(served.valid, extra="X-Request-ID: r5\r\n"),
    ]
    connection.send(b"".join(burst))
    answers = [connection.response() for _ in burst]
    assert [(status, headers["x-request-id"]) for status, headers, _ in answers] == [
        (200, "r1"), (422, "r2"), (200, "r3"), (200, "r4"), (200, "r5")]
    assert json.loads(answers[2][2]) == {"status": "ok"}
    assert answers[3][2] == answers[4][2] == answers[0][2]
    # A valid request right behind one handed over (nothing queued yet) waits for it too.
    connection.send(post(b'{"records": []}', extra="X-Request-ID: r6\r\n") + post(served.valid, extra="X-Request-ID: r7\r\n"))
    assert [connection.response()[1]["x-request-id"] for _ in range(2)] == ["r6", "r7"]


@pytest.mark.parametrize("variant", ["http/1.0", "query string", "chunked", "expect 100-continue"])
def test_requests_unlike_the_plain_case_take_the_asgi_path_and_are_answered(served, variant):
    connection = HttpConnection(served.port)
    if variant == "http/1.0":
        connection.send(post(served.valid, version="1.0"))
    elif variant == "query string":
        connection.send(post(served.valid, path="/v1/predict?debug=1"))
    elif variant == "chunked":
        connection.send(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                        + b"%x\r\n" % len(served.valid) + served.valid + b"\r\n0\r\n\r\n")
    else:
        connection.send(post(served.valid, extra="Expect: 100-continue\r\n"))
        assert connection.response()[0] == 100
    status, _, body = connection.response()
    assert status == 200 and len(json.loads(body)["predictions"]) == 1
    assert served.reached_asgi == ["/v1/predict"]


@pytest.mark.parametrize(("content_type", "length", "status"), [("text/plain", None, 415), ("application/json", MAX_BODY + 1, 413)])
def test_refusals_of_the_asgi_path_stay(served, content_type, length, status):
    connection = HttpConnection(served.port)
    body = b" " * (length or 10)
    connection.send(f"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
                    .encode() + body)
    assert connection.response()[0] == status
    assert served.reached_asgi == ["/v1/predict"]


def test_a_bug_in_a_direct_answer_is_a_logged_500_naming_the_request(served, monkeypatch, caplog):
    from toolkit.ml.artifacts import ModelArtifact

    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(ModelArtifact, "predict_proba", broken)
    connection = HttpConnection(served.port)
    with caplog.at_level("ERROR", logger="toolkit.serve"):
        connection.send(post(served.valid, extra="X-Request-ID: req-500\r\n"))
        status, headers, body = connection.response()
    assert status == 500 and headers["x-request-id"] == "req-500"
    assert "req-500" in json.loads(body)["detail"][0]["msg"]
    assert [r.getMessage() for r in caplog.records if r.name == "toolkit.serve"] == [
        "request req-500 POST /v1/predict failed: RuntimeError: the model broke"]
    assert served.reached_asgi == []
    assert metric(served.port, 'toolkit_http_requests_total{route="/v1/predict",status="500"}') == 1


def test_a_client_gone_mid_body_is_counted_as_499(served):
    connection = HttpConnection(served.port)
    connection.send(post(served.valid)[:-5])
    time.sleep(0.2)
    connection.close()
    series = 'toolkit_http_requests_total{route="/v1/predict",status="499"}'
    wait_until("the 499 counted", lambda: metric(served.port, series) == 1, timeout=5, interval=0.05)
    assert served.reached_asgi == []


def test_shutdown_lets_a_request_in_flight_finish_then_closes(served):
    """A graceful stop while a body is on its way: the request is answered, with Connection: close."""
    connection = HttpConnection(served.port)
    request = post(served.valid)
    connection.send(request[:-5])
    time.sleep(0.2)
    served.server.should_exit = True
    time.sleep(0.5)  # uvicorn's main loop notices within 0.1 s and asks each connection to shut down
    connection.send(request[-5:])
    status, headers, _ = connection.response()
    assert status == 200 and headers["connection"] == "close"
    answered = time.monotonic()
    assert connection.closed_by_server()
    assert time.monotonic() - answered < 2, "closed by the keep-alive timeout (5 s), not after the answer"
