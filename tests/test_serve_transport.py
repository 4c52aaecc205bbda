"""The server under uvicorn on 127.0.0.1, over raw sockets: what lives in the transport (chunked
bodies, disconnects, slow request heads, HEAD, content types, request ids, 5xx logging)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import REPO, HttpConnection, free_port, metric_sum, wait_ready

MAX_BODY = 64 * 1024
HEADER_TIMEOUT = 2


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """`toolkit serve` with a 64 KiB body limit and a 2 s header timeout; its log is a file."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(model_dir), "--port", str(port),
             "--max-body-bytes", str(MAX_BODY), "--header-timeout", str(HEADER_TIMEOUT)],
            stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/readyz", process=process)
        yield {"url": url, "port": port, "pid": process.pid, "log": log}
    finally:
        process.terminate()
        process.wait(10)


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _connect(server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server["port"]), timeout=10)


def _metric(server, pattern: str) -> float:
    return metric_sum(server["url"], pattern)


def test_a_chunked_upload_is_refused_as_soon_as_it_passes_the_limit(server):
    """Issue 13 item 1: a chunked body was read whole before the 413 (674 MB for four 100 MB uploads)."""
    before = _rss_kib(server["pid"])
    connection = HttpConnection(server["port"])
    connection.send(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    sent = 0
    try:
        for _ in range(20 * 16):  # up to 20 MiB
            connection.send(chunk)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed the connection after answering
    status, _, body = connection.response()
    connection.close()
    assert status == 413 and b"byte limit" in body
    assert sent < 8 * 2**20, f"{sent} bytes went out before the server stopped reading"  # socket buffers, not the body
    assert _rss_kib(server["pid"]) - before < 10 * 1024
    assert _metric(server, 'toolkit_http_requests_total{route="/v1/predict",status="413"}') >= 1


def test_content_length_over_the_limit_is_labelled_with_its_route(server):
    request = urllib.request.Request(server["url"] + "/v1/predict", data=b" " * (MAX_BODY + 1),
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 413
    assert _metric(server, 'toolkit_http_requests_total{route="/v1/predict",status="413"}') >= 1


def test_a_client_that_disconnects_mid_body_is_not_a_server_error(server):
    """Item 3: counted as status 499, not 500."""
    before_499 = _metric(server, 'toolkit_http_requests_total{route="/v1/predict",status="499"}')
    sock = _connect(server)
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000\r\n\r\n{\"rec")
    time.sleep(0.3)
    sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _metric(server, 'toolkit_http_requests_total{route="/v1/predict",status="499"}') == before_499:
        time.sleep(0.1)
    assert _metric(server, 'toolkit_http_requests_total{route="/v1/predict",status="499"}') == before_499 + 1
    assert _metric(server, 'toolkit_http_requests_total{route="/v1/predict",status="500"}') == 0


def test_slow_request_heads_are_cut_off(server):
    """Item 4: 50 connections that never finish their headers are closed after the header timeout."""
    slow = []
    for _ in range(50):
        sock = _connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        slow.append(sock)
    # Meanwhile a normal client is served.
    assert json.loads(urllib.request.urlopen(server["url"] + "/healthz", timeout=5).read()) == {"status": "ok"}
    started = time.monotonic()
    for sock in slow:
        sock.settimeout(HEADER_TIMEOUT + 5)
        assert sock.recv(1024) == b""  # closed by the server
        sock.close()
    assert time.monotonic() - started < HEADER_TIMEOUT + 3
    assert "no complete request head within 2 s" in server["log"].read_text()


def test_a_keep_alive_connection_that_stalls_in_its_second_head_is_cut_off(server):
    connection = HttpConnection(server["port"])
    connection.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert connection.response()[0] == 200
    connection.send(b"GET /healthz HTTP/1.1\r\n")
    connection.sock.settimeout(HEADER_TIMEOUT + 5)
    assert connection.closed_by_server()
    connection.close()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/v1/model"])
def test_head_is_answered_like_get_without_a_body(server, path):
    request = urllib.request.Request(server["url"] + path, method="HEAD")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200 and response.read() == b""


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_declared_as_json_is_a_415(server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(server["url"] + "/v1/predict", data=b'{"records": []}', headers=headers)
    if content_type is None:
        request.remove_header("Content-type")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 415
    assert "application/json" in json.loads(refused.value.read())["detail"][0]["msg"]


def test_docs_routes_have_their_own_label_and_request_ids_come_back(server):
    with urllib.request.urlopen(server["url"] + "/docs", timeout=5) as response:
        assert response.status == 200 and len(response.headers["X-Request-ID"]) == 32
    request = urllib.request.Request(server["url"] + "/healthz", headers={"X-Request-ID": "trace-42"})
    assert urllib.request.urlopen(request, timeout=5).headers["X-Request-ID"] == "trace-42"
    assert _metric(server, 'toolkit_http_requests_total{route="/docs",status="200"}') >= 1


def test_a_500_is_logged_once_with_its_request_id_and_exception(model_dir, caplog, monkeypatch):
    """In-process (a real 500 needs a bug): the log names the request id and the exception."""
    from fastapi.testclient import TestClient

    import toolkit.serve.app as app_module
    from toolkit.ml.artifacts import ModelArtifact

    def broken(*args, **kwargs):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(ModelArtifact, "predict_proba", broken)  # on the fast route and the FastAPI one alike
    client = TestClient(app_module.create_app(model_dir), raise_server_exceptions=False)
    record = {name: 1.0 for name in client.get("/v1/model").json()["features"]}
    with caplog.at_level("ERROR", logger="toolkit.serve"):
        response = client.post("/v1/predict", json={"records": [record]}, headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500 and "req-500" in response.json()["detail"][0]["msg"]
    lines = [r.getMessage() for r in caplog.records if r.name == "toolkit.serve"]
    assert lines == ["request req-500 POST /v1/predict failed: RuntimeError: the model broke"]
