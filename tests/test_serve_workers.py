"""`toolkit serve --workers N`, for real: forked workers, each on its own socket on the port, metrics summed over all of
them at every scrape, a dead worker replaced while the others answer, a clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, free_port, wait_ready, wait_until

PREDICTS = re.compile(r'^toolkit_http_requests_total\{route="/v1/predict",status="200"\} (\S+)$', re.M)


def _children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in tasks.read_text().split()] if tasks.exists() else []


def _predicted(url: str) -> float:
    found = PREDICTS.search(urllib.request.urlopen(url + "/metrics", timeout=5).read().decode())
    return float(found.group(1)) if found else 0.0


def _predict(url: str, record: dict) -> dict:
    request = urllib.request.Request(url + "/v1/predict", data=json.dumps({"records": [record]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:  # a new connection each: the kernel spreads them
        return json.loads(response.read())


@pytest.fixture
def server(model_dir):
    port = free_port()
    process = subprocess.Popen([str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(model_dir), "--port", str(port),
                                "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url + "/readyz", process=process)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()  # the supervisor stops its workers and removes its metrics directory
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_workers_answer_together_and_every_scrape_counts_them_all(server):
    process, url = server
    assert len(_children(process.pid)) == 2
    features = json.loads(urllib.request.urlopen(url + "/v1/model").read())["features"]
    record = {name: 1 for name in features}
    for _ in range(60):
        assert _predict(url, record)["predictions"][0]["label"]
    assert [_predicted(url) for _ in range(6)] == [60.0] * 6  # whichever worker answers the scrape
    metrics = urllib.request.urlopen(url + "/metrics").read().decode()
    assert re.search(r'^toolkit_model_info\{.*version="[^"]+".*\} 1\.0$', metrics, re.M)
    starts = set(re.findall(r"^process_start_time_seconds (\S+)$", metrics, re.M) +
                 re.findall(r"^process_start_time_seconds (\S+)$", urllib.request.urlopen(url + "/metrics").read().decode(), re.M))
    assert len(starts) == 1  # the supervisor's: a worker answering the scrape is not a restart


def test_a_dead_worker_is_replaced_and_the_others_keep_answering(server):
    process, url = server
    features = json.loads(urllib.request.urlopen(url + "/v1/model").read())["features"]
    record = {name: 1 for name in features}
    for _ in range(10):
        _predict(url, record)
    # A worker counts a request just after answering it: let the tenth be counted before the kill.
    wait_until("the tenth prediction counted", lambda: _predicted(url) >= 10, timeout=5, interval=0.05)
    victim, survivor = _children(process.pid)
    os.kill(victim, signal.SIGKILL)
    for _ in range(20):  # meanwhile every request is answered: by the survivor, or queued on the victim's socket for its replacement
        assert _predict(url, record)["predictions"]
    wait_until("the dead worker replaced", lambda: len(_children(process.pid)) == 2 and victim not in _children(process.pid),
               timeout=15)
    assert len(_children(process.pid)) == 2 and survivor in _children(process.pid)
    assert _predicted(url) == 30.0  # the dead worker's counts are kept: counters never go back
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert "exited (signal 9); starting another" in process.stderr.read().decode()


def test_a_second_server_on_a_port_in_use_fails_instead_of_sharing_it(server, model_dir):
    """Each worker's socket has SO_REUSEPORT, which would let a second server of the same user join the
    port and take half its connections: the supervisor refuses a port something listens on."""
    _, url = server
    port = url.rsplit(":", 1)[1]
    for workers in ("2", "1"):  # one worker too: the port is checked before "serving … on" is announced
        second = subprocess.run([str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(model_dir), "--port", port,
                                 "--workers", workers], capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stderr[-2000:]
        assert f"cannot listen on 127.0.0.1:{port}" in second.stderr and "another --port" in second.stderr, second.stderr[-2000:]
        assert "serving model" not in second.stderr and "Traceback" not in second.stderr
    wait_ready(url + "/readyz")  # the first server still answers


def test_workers_stop_when_the_supervisor_is_killed(server):
    """A SIGKILL (or the OOM killer) gives the supervisor no chance to stop its workers: the kernel does."""
    process, _ = server
    workers = _children(process.pid)
    assert len(workers) == 2
    process.kill()
    process.wait(10)
    wait_until("the workers stopped", lambda: not any(map(_running, workers)), timeout=10, interval=0.1)
    assert not [pid for pid in workers if _running(pid)]


def _running(pid: int) -> bool:
    """The process exists and is not a zombie (a dead child its parent has not reaped)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return False  # gone
    return "zombie" not in state
