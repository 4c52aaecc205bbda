"""Memory on hostile and large inputs, against the targets of issue 13, in one run:

1. the server's peak RSS while four clients upload 100 MB chunked bodies at once
   (target: within 50 MB of its idle RSS; the body limit is what it may buffer);
2. the peak RSS of `toolkit train` on a generated numeric CSV of about 200 MB
   (target: at most 4x the file size);
3. batch scoring, `toolkit predict --input big.csv --output scored.csv` (issue 27): peak RSS on a
   CSV of --score-mb (1,000 MB) side by side with one a tenth of its size (target: the same
   peak, whatever the file's size).

    .venv/bin/python bench/memory.py [--csv-mb 200] [--upload-mb 100] [--score-mb 1000] [--json results.json]
                                     [--toolkit OTHER_CHECKOUT/.venv/bin/toolkit]   (e.g. a checkout of an older commit)

The server runs as `toolkit serve` on 127.0.0.1 (a small model is trained first); RSS is read
from /proc every 10 ms. Traffic goes to 127.0.0.1 only and is bounded in bytes and time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOOLKIT = str(ROOT / ".venv" / "bin" / "toolkit")  # --toolkit measures another checkout's


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chunked_upload(port: int, megabytes: int, result: dict) -> None:
    """POST a chunked body of `megabytes` MB, stopping when the server answers or closes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    sent = 0
    try:
        while sent < megabytes * 1_000_000:
            sock.sendall(chunk)
            sent += 65536
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed: the rest is not sent
    try:
        result["status"] = int(sock.recv(64).split(b" ")[1])
    except (OSError, IndexError, ValueError):
        result["status"] = None
    result["sent_mb"] = round(sent / 1e6, 1)
    sock.close()


def server_peak(model: Path, uploads: int, megabytes: int) -> dict:
    port = free_port()
    server = subprocess.Popen([TOOLKIT, "serve", "--model", str(model), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        for _ in range(20):  # warm up the request path before measuring idle
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
        time.sleep(0.5)
        idle = rss_mib(server.pid)
        results = [{} for _ in range(uploads)]
        threads = [threading.Thread(target=chunked_upload, args=(port, megabytes, r)) for r in results]
        peak = idle
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mib(server.pid))
            time.sleep(0.01)
        peak = max(peak, rss_mib(server.pid))
        return {"idle_rss_mib": round(idle, 1), "peak_rss_mib": round(peak, 1), "growth_mib": round(peak - idle, 1),
                "target_growth_mib": 50, "statuses": [r.get("status") for r in results],
                "sent_mb_each": [r.get("sent_mb") for r in results], "uploads": uploads, "upload_mb": megabytes}
    finally:
        server.terminate()
        server.wait(10)


def generate_csv(path: Path, megabytes: int, seed: int = 0) -> None:
    """12 numeric features (3 decimals) and a binary label, rows until the file has `megabytes` MB."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        handle.write(",".join([f"f{i}" for i in range(12)] + ["label"]) + "\n")
        while handle.tell() < megabytes * 1_000_000:
            x = rng.normal(50, 10, size=(100_000, 12))
            y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 5, size=len(x)) > 75).astype(int)
            rows = np.column_stack([np.round(x, 3), y])
            handle.write("\n".join(",".join(f"{v:.3f}" for v in r[:-1]) + f",{int(r[-1])}" for r in rows) + "\n")


def train_peak(csv: Path, out: Path) -> dict:
    size_mb = csv.stat().st_size / 1e6
    start = time.monotonic()
    result = subprocess.run([TOOLKIT, "train", "--env", "local", "--data", str(csv), "--label", "label", "--epochs", "1",
                             "--out", str(out), "--json"], capture_output=True, text=True, env={**os.environ, "TOOLKIT_ROOT": str(ROOT)})
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit(f"toolkit train failed: {result.stderr[-2000:]}")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 * 1.048576  # KiB → MB
    return {"csv_mb": round(size_mb, 1), "peak_rss_mb": round(peak_mb, 1), "ratio": round(peak_mb / size_mb, 2),
            "target_ratio": 4.0, "seconds": round(seconds, 1), "test_accuracy": json.loads(result.stdout)["test"]["accuracy"]}


def peak_rss(command: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of a command, read from /proc (VmHWM) every 10 ms while it runs."""
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "TOOLKIT_ROOT": str(ROOT)})
    peak = 0.0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status") as status:
                peak = max([peak] + [int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:")])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.01)
    if process.returncode != 0:
        raise SystemExit(f"{command[:2]} failed: {process.stderr.read().decode()[-2000:]}")
    return peak, time.monotonic() - start


def score_peaks(model: Path, tmp: Path, megabytes: int) -> dict:
    """Batch scoring's peak RSS on a file of `megabytes` MB and on one a tenth of it."""
    results = {}
    for size in (megabytes // 10, megabytes):
        csv = tmp / f"score-{size}.csv"
        generate_csv(csv, size, seed=1)
        peak, seconds = peak_rss([TOOLKIT, "predict", "--model", str(model), "--env", "local", "--input", str(csv),
                                  "--output", str(tmp / "scored.csv"), "--json"])
        rows = sum(1 for _ in open(tmp / "scored.csv")) - 1
        results[size] = {"csv_mb": round(csv.stat().st_size / 1e6, 1), "peak_rss_mib": round(peak, 1), "seconds": round(seconds, 1),
                         "rows": rows, "rows_per_second": round(rows / seconds)}
        csv.unlink()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv-mb", type=int, default=200)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--uploads", type=int, default=4)
    parser.add_argument("--score-mb", type=int, default=1000, help="batch scoring: the big CSV's size (and a tenth of it)")
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--toolkit", help="the toolkit executable to measure (default: this checkout's)")
    args = parser.parse_args()
    global TOOLKIT
    TOOLKIT = args.toolkit or TOOLKIT
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tmp = Path(tmp)
        # A small model to serve: the bundled dataset, a few epochs.
        subprocess.run([TOOLKIT, "train", "--env", "local", "--epochs", "5", "--out", str(tmp / "model"), "--json"],
                       check=True, capture_output=True, env={**os.environ, "TOOLKIT_ROOT": str(ROOT)})
        server = server_peak(tmp / "model" / "latest", args.uploads, args.upload_mb)
        print(f"server: idle {server['idle_rss_mib']} MiB, peak {server['peak_rss_mib']} MiB during {args.uploads} x "
              f"{args.upload_mb} MB chunked uploads (+{server['growth_mib']} MiB; target ≤ +50); statuses {server['statuses']}, "
              f"MB sent before the server stopped reading {server['sent_mb_each']}", flush=True)
        generate_csv(tmp / "big.csv", args.csv_mb)
        train = train_peak(tmp / "big.csv", tmp / "artifacts")
        print(f"train:  {train['csv_mb']} MB CSV → peak RSS {train['peak_rss_mb']} MB = {train['ratio']}x the file "
              f"(target ≤ 4x), {train['seconds']} s for 1 epoch, test accuracy {train['test_accuracy']:.3f}", flush=True)
        (tmp / "big.csv").unlink()
        score = score_peaks(tmp / "artifacts" / "latest", tmp, args.score_mb)
        small, big = score[args.score_mb // 10], score[args.score_mb]
        print(f"score:  predict --output on {small['csv_mb']} MB → peak RSS {small['peak_rss_mib']} MiB "
              f"({small['rows_per_second']:,} rows/s); on {big['csv_mb']} MB → {big['peak_rss_mib']} MiB "
              f"({big['rows_per_second']:,} rows/s, {big['rows']:,} rows in {big['seconds']} s); target: the same peak")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"server": server, "train": train, "score": score}, indent=2))
    ok = server["growth_mib"] <= 50 and train["ratio"] <= 4.0 and big["peak_rss_mib"] <= small["peak_rss_mib"] + 20
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
