"""End to end on the local environment's monitoring, real parts only: the server (`toolkit serve`, the
same program the serving container runs) under traffic, the local Prometheus scraping it and
evaluating the rules, Alertmanager routing, and the toolkit's alert receiver. A fault is injected
through the server's test-only fault switch; the alert must fire in Prometheus, reach the receiver,
and resolve once the fault is gone. The seconds each step took are printed (pytest -s) and written
to the test's directory."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import REPO, SERVICES, free_port, wait_ready
from toolkit.context import Context
from toolkit.local.monitoring import notifications_file, start_monitoring, stop_monitoring
from toolkit.monitoring.query import PrometheusClient
from toolkit.monitoring.receiver import read_notifications
from toolkit.paths import ProjectPaths

pytestmark = SERVICES  # they start services of their own: not in `make test-fast`


@pytest.fixture(scope="module")
def stack(model_dir, tmp_path_factory):
    """The local environment on ports and a state directory of this test's own."""
    paths = ProjectPaths(tmp_path_factory.mktemp("monitoring-e2e"))
    local = Context.load("local", REPO)
    monitoring = local.config.monitoring
    config = local.config.model_copy(update={
        "serving": local.config.serving.model_copy(update={"port": free_port()}),
        "monitoring": monitoring.model_copy(update={"local": monitoring.local.model_copy(update={
            "prometheus_port": free_port(), "alertmanager_port": free_port(), "receiver_port": free_port()})})})
    ctx = Context(config, paths)
    faults = paths.root / "faults.json"
    log = open(paths.root / "server.log", "wb")  # a file, not a pipe: every injected 500 logs a line
    server = subprocess.Popen([str(REPO / ".venv" / "bin" / "toolkit"), "serve", "--model", str(model_dir),
                               "--port", str(config.serving.port), "--fault-file", str(faults)],
                              stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{config.serving.port}"
    try:
        wait_ready(url + "/readyz")
        start_monitoring(ctx)
        yield ctx, url, faults
    finally:
        stop_monitoring(paths)
        server.terminate()
        server.wait(10)
        log.close()


def _traffic(url: str, stop: threading.Event) -> None:
    record = json.loads(urllib.request.urlopen(url + "/v1/model", timeout=5).read())["features"]
    body = json.dumps({"records": [{name: 1.0 for name in record}]}).encode()
    while not stop.is_set():
        request = urllib.request.Request(url + "/v1/predict", body, {"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=5).read()
        except OSError:
            pass  # the injected 500s
        time.sleep(0.02)


def _until(what: str, check, timeout: float = 60.0, poll: float = 0.1) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout} s")


def _notified(ctx, alertname: str, status: str, after: float) -> bool:
    return any(n["received_at"] >= after and any(a["labels"].get("alertname") == alertname and a["status"] == status for a in n["alerts"])
               for n in read_notifications(notifications_file(ctx.paths)))


@pytest.mark.parametrize("alertname, fault", [("ServingErrorRatioHigh", {"error_ratio": 0.5}),
                                              ("ServingLatencyHigh", {"latency_ms": 400})])
def test_a_fault_fires_an_alert_that_reaches_the_receiver_and_resolves(stack, alertname, fault, tmp_path):
    ctx, url, faults = stack
    prometheus = PrometheusClient(f"http://127.0.0.1:{ctx.config.monitoring.local.prometheus_port}")
    stop = threading.Event()
    workers = [threading.Thread(target=_traffic, args=(url, stop)) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        _until("serving scraped", lambda: prometheus.scalar('up{job="serving"}') == 1.0)
        _until("traffic seen", lambda: (prometheus.scalar("toolkit:predict_requests:rate") or 0) > 1)
        assert not any(a["labels"]["alertname"] == alertname for a in prometheus.firing_alerts())

        injected, started = time.time(), time.monotonic()
        faults.write_text(json.dumps(fault))
        _until("firing in Prometheus", lambda: any(a["labels"]["alertname"] == alertname for a in prometheus.firing_alerts()))
        firing = time.monotonic() - started
        _until("firing notification", lambda: _notified(ctx, alertname, "firing", injected))
        notified = time.monotonic() - started

        recovered, started = time.time(), time.monotonic()
        faults.unlink()
        _until("resolved notification", lambda: _notified(ctx, alertname, "resolved", recovered), timeout=90)
        resolved = time.monotonic() - started
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    [notification] = [n for n in read_notifications(notifications_file(ctx.paths)) if n["received_at"] >= injected
                      and n["status"] == "firing" and any(a["labels"]["alertname"] == alertname for a in n["alerts"])][:1]
    alert = next(a for a in notification["alerts"] if a["labels"]["alertname"] == alertname)
    assert notification["receiver"] == "page" and alert["labels"]["severity"] == "page" and alert["labels"]["env"] == "local"
    assert alert["annotations"]["runbook_url"].endswith(f"#runbook-{alertname.lower()}")
    timings = {"alert": alertname, "fault_to_firing_s": round(firing, 1), "fault_to_notification_s": round(notified, 1),
               "recovery_to_resolved_s": round(resolved, 1)}
    print(json.dumps(timings))
    (tmp_path / "timings.json").write_text(json.dumps(timings))


def test_toolkit_monitor_reads_the_local_prometheus(stack, tmp_path, monkeypatch, run_cli):
    """`toolkit monitor --env local --json --png`: the figures now, and the panels drawn from range queries."""
    import yaml

    ctx, url, _ = stack
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "local.yaml").write_text(yaml.safe_dump(ctx.config.model_dump(mode="json")))
    (tmp_path / "data").symlink_to(REPO / "data")
    monkeypatch.setenv("TOOLKIT_ROOT", str(tmp_path))
    stop = threading.Event()
    worker = threading.Thread(target=_traffic, args=(url, stop))
    worker.start()
    prometheus = PrometheusClient(f"http://127.0.0.1:{ctx.config.monitoring.local.prometheus_port}")
    try:
        _until("traffic seen", lambda: (prometheus.scalar("toolkit:predict_requests:rate") or 0) > 1)
        result = run_cli("monitor", "--env", "local", "--json", "--png", tmp_path / "monitor.png")
    finally:
        stop.set()
        worker.join()
    assert result.exit_code == 0, result.output
    now = json.loads(result.stdout)
    served = json.loads(urllib.request.urlopen(url + "/v1/model", timeout=5).read())["model_version"]
    assert now["model_versions"] == [served] and now["request_rate"] > 1 and now["p99_ms"] is not None
    assert now["slo_p99_ms"] == ctx.config.monitoring.slo_p99_ms and isinstance(now["firing_alerts"], list)
    assert now["training_gpu_utilisation"] == []  # no DCGM exporter here: the query runs and finds no GPU
    assert (tmp_path / "monitor.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = run_cli("monitor", "--env", "local")
    assert text.exit_code == 0 and "latency   p50" in text.stdout and f"model     {served}" in text.stdout
    import shutil

    shutil.copy(tmp_path / "monitor.png", REPO / ".local" / "monitor-e2e.png")  # for a person to look at
