"""Serving throughput: our server (`toolkit serve`) with the feedback loop off and on, and a bare
FastAPI endpoint calling the same numpy forward (bench/reference_server.py), side by side in one
run, on 127.0.0.1.

"loop on" is the server as the serving image runs it: a prediction id per answer, every record
kept for drift, and the predictions logged and shipped to the artifact store (a real moto S3,
started for the run, on the same two cores: its CPU is charged to "loop on" here, not in the
cloud). Two sample rates: 1.0 (local, dev, staging: every prediction logged, the worst case) and
0.1 (prod). The issue's target: loop on costs at most 10 % of the requests per second of loop off.

For single-record and 64-record requests at several concurrencies, prints requests/s and p50/p99
latency. The load generator is keep-alive HTTP/1.1 from Python threads on
the same 2 cores as the servers: it costs both servers alike, so compare the two columns
rather than read the absolute numbers as capacity.

    python bench/serve_throughput.py [--model artifacts/local/latest] [--seconds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, ready_path: str, env: dict) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1)
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"server exited: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server on port {port} did not become ready")


def load(port: int, path: str, body: bytes, concurrency: int, seconds: float) -> dict:
    """Keep-alive clients posting `body` for `seconds` (bounded); latencies of 2xx answers."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine = []
        while time.perf_counter() < stop_at and len(mine) < 100_000:
            started = time.perf_counter()
            connection.request("POST", path, body, {"content-type": "application/json"})
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                mine.append(time.perf_counter() - started)
            else:
                errors[0] += 1
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    quantile = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {"rps": len(latencies) / elapsed, "p50_ms": quantile(0.50), "p99_ms": quantile(0.99),
            "requests": len(latencies), "errors": errors[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "artifacts" / "local" / "latest"))
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    from toolkit.ml.artifacts import load_artifact
    from toolkit.ml.table import read_csv

    model = load_artifact(args.model)
    table = read_csv(ROOT / "data" / "heart-cleveland.csv")
    raw = [[record[c] for c in model.preprocessor.columns] for record in table.records(range(64))]
    preprocessed = model.preprocessor.transform_columns({c: [r[j] for r in raw] for j, c in enumerate(model.preprocessor.columns)}).tolist()

    import tempfile

    from toolkit.aws import client, emulator_environment
    from toolkit.config import load_environment
    from toolkit.local.moto import start_moto, stop_moto
    from toolkit.paths import ProjectPaths

    local = load_environment("local", ROOT)
    config = local.model_copy(update={"aws": local.aws.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"})})
    moto = ProjectPaths(Path(tempfile.mkdtemp(prefix="bench-moto-")))
    start_moto(moto, config.aws.endpoint_url)
    client("s3", config).create_bucket(Bucket=config.artifact_store.bucket)
    ports = {"off": free_port(), "on": free_port(), "on 0.1": free_port(), "ref": free_port()}
    env = {**os.environ, "MODEL_DIR": args.model, "PYTHONPATH": str(ROOT)}

    def loop_env(sample_rate: float) -> dict:
        feedback = config.feedback.model_copy(update={"sample_rate": sample_rate, "flush_seconds": 5.0})
        return {**env, **emulator_environment(config), "TOOLKIT_ENV": "bench", "TOOLKIT_FEEDBACK": feedback.model_dump_json(),
                "TOOLKIT_PREDICTION_LOG_BUCKET": config.artifact_store.bucket}

    serve = [sys.executable, "-m", "toolkit.cli", "serve", "--model", args.model, "--port"]
    servers = [
        start(serve + [str(ports["off"])], ports["off"], "/readyz", env),
        start(serve + [str(ports["on"])], ports["on"], "/readyz", loop_env(1.0)),
        start(serve + [str(ports["on 0.1"])], ports["on 0.1"], "/readyz", loop_env(0.1)),
        start([sys.executable, "-m", "uvicorn", "bench.reference_server:app", "--port", str(ports["ref"]), "--log-level", "warning"],
              ports["ref"], "/docs", env),
    ]
    results = []
    try:
        print(f"{'batch':>5} {'conc':>4} | {'loop off':>9} {'p50 ms':>7} {'p99 ms':>7} | {'loop on':>9} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'on/off':>6} | {'on, 0.1':>9} {'on/off':>6} | {'reference':>9} {'p50 ms':>7} | off/ref   (req/s)")
        for batch in (1, 64):
            ours_body = json.dumps({"instances": raw[:batch]}).encode()
            ref_body = json.dumps({"instances": preprocessed[:batch]}).encode()
            for concurrency in map(int, args.concurrency.split(",")):
                off = load(ports["off"], "/v1/predict", ours_body, concurrency, args.seconds)
                on = load(ports["on"], "/v1/predict", ours_body, concurrency, args.seconds)
                sampled = load(ports["on 0.1"], "/v1/predict", ours_body, concurrency, args.seconds)
                ref = load(ports["ref"], "/predict", ref_body, concurrency, args.seconds)
                results.append({"batch": batch, "concurrency": concurrency, "loop_off": off, "loop_on": on, "loop_on_sample_0.1": sampled,
                                "reference": ref})
                print(f"{batch:>5} {concurrency:>4} | {off['rps']:>9,.0f} {off['p50_ms']:>7.2f} {off['p99_ms']:>7.2f} | "
                      f"{on['rps']:>9,.0f} {on['p50_ms']:>7.2f} {on['p99_ms']:>7.2f} | {on['rps'] / off['rps']:>5.2f}× | "
                      f"{sampled['rps']:>9,.0f} {sampled['rps'] / off['rps']:>5.2f}× | "
                      f"{ref['rps']:>9,.0f} {ref['p50_ms']:>7.2f} | {off['rps'] / ref['rps']:.2f}×", flush=True)
                assert all(r["errors"] == 0 for r in (off, on, sampled, ref)), "non-2xx answers during the benchmark"
        shipped = urllib.request.urlopen(f"http://127.0.0.1:{ports['on']}/metrics", timeout=5).read().decode()
        print("loop on, prediction log:", ", ".join(line for line in shipped.splitlines()
                                                    if line.startswith("toolkit_prediction_log_records_total")))
        for key, what in (("loop_on", "sample 1.0"), ("loop_on_sample_0.1", "sample 0.1")):
            ratios = [r[key]["rps"] / r["loop_off"]["rps"] for r in results]
            print(f"loop on ({what}) / loop off: mean {sum(ratios) / len(ratios):.3f}×, worst {min(ratios):.3f}× (target ≥ 0.90×)")
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
        stop_moto(moto)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
