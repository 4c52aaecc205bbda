"""Serving throughput: our server (`toolkit serve`) vs a bare FastAPI endpoint calling the same
numpy forward (bench/reference_server.py), side by side in one run, on 127.0.0.1.

For single-record and 64-record requests at several concurrencies, prints requests/s,
records/s and p50/p99 latency. The load generator is keep-alive HTTP/1.1 from Python threads on
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

    ours_port, ref_port = free_port(), free_port()
    env = {**os.environ, "MODEL_DIR": args.model, "PYTHONPATH": str(ROOT)}
    servers = [
        start([sys.executable, "-m", "toolkit.cli", "serve", "--model", args.model, "--port", str(ours_port)], ours_port, "/readyz", env),
        start([sys.executable, "-m", "uvicorn", "bench.reference_server:app", "--port", str(ref_port), "--log-level", "warning"],
              ref_port, "/docs", env),
    ]
    results = []
    try:
        print(f"{'batch':>5} {'conc':>4} | {'ours req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'ref req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | ours/ref")
        for batch in (1, 64):
            ours_body = json.dumps({"instances": raw[:batch]}).encode()
            ref_body = json.dumps({"instances": preprocessed[:batch]}).encode()
            for concurrency in map(int, args.concurrency.split(",")):
                ours = load(ours_port, "/v1/predict", ours_body, concurrency, args.seconds)
                ref = load(ref_port, "/predict", ref_body, concurrency, args.seconds)
                results.append({"batch": batch, "concurrency": concurrency, "ours": ours, "reference": ref})
                print(f"{batch:>5} {concurrency:>4} | {ours['rps']:>10,.0f} {ours['p50_ms']:>7.2f} {ours['p99_ms']:>7.2f} | "
                      f"{ref['rps']:>10,.0f} {ref['p50_ms']:>7.2f} {ref['p99_ms']:>7.2f} | {ours['rps'] / ref['rps']:.2f}×", flush=True)
                assert ours["errors"] == 0 and ref["errors"] == 0, "non-2xx answers during the benchmark"
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
