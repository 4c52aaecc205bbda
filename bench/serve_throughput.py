"""Serving throughput, side by side in one run on 127.0.0.1, with `wrk` as the load generator:

- ours: `toolkit serve` as the serving image runs it, with every feature on: request ids, limits,
  metrics, and the feedback loop (a prediction id per answer, drift, the prediction log shipped
  to a real moto S3 started for the run; sample rate --sample-rate, 1.0 by default, the worst
  case); with 1 worker and with --workers N;
- ours, loop off: the same server without the feedback loop (what the loop costs);
- reference: a bare FastAPI endpoint calling the same numpy forward on preprocessed rows, with no
  validation, preprocessing or metrics (bench/reference_server.py), on uvloop and httptools as
  uvicorn picks them when installed (they are now); and "reference, h11", the same on asyncio and
  h11, as the issue measured it (its venv had neither);
- BentoML: the same forward as a BentoML service (bench/bentoml_service.py), in a venv of its own
  made by this script under .cache/ (its dependencies never enter ours); skipped with --no-bentoml;
- ours, string categories: records as a client would send them, each categorical value as the
  string GET /v1/model lists ("4", not 4);
- ours and the reference on a dataset with text categories (heart's codes as names, "typical
  angina", "fixed defect", …; a model trained on it for the run), to see texts on the fast path;
- ours @REV (--baseline REV): the same server at another revision of this repository (a git
  worktree under .cache/), run with the same settings, so a change is measured against what it
  changes in one run.

Every `toolkit serve` contender runs with the feedback loop's credentials (labellers' token
hashes) as a deployed server has them.

Each contender serves the model given by --model (default: artifacts/local/latest; one is
trained with the local environment's settings if there is none), and is sent rows of the
heart-disease dataset the model was trained on: raw records to ours, the same rows preprocessed
to the reference and BentoML. For single-record requests at c=16 and c=64 and 64-record
requests at c=16, `wrk` (one thread, keep-alive) runs each contender in turn, --repeats times
interleaved; the medians of requests/s and p99 latency are reported with the ratios the issue
sets targets for. Servers and wrk share the machine's cores: compare columns, and read absolute
numbers as this machine's.

    python bench/serve_throughput.py [--seconds 5] [--repeats 3] [--workers 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BENTOML = "bentoml==1.4.40"
CELLS = [(1, 16), (1, 64), (64, 16)]  # (records per request, connections)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_wrk() -> str:
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            raise SystemExit("wrk is not installed: sudo apt-get install wrk")
        # the package lists may be empty on a fresh machine (as the Makefile's apt step does)
        subprocess.run(["bash", "-c", "apt-get update -qq && apt-get install -y -qq wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk")


def ensure_bentoml_venv() -> Path:
    """BentoML in .cache/bench-bentoml (made once): numpy and BentoML's own pins, nothing of ours."""
    venv = ROOT / ".cache" / "bench-bentoml"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", BENTOML, "numpy"], check=True)
        (venv / ".installed").touch()
    return venv


def start(command: list[str], port: int, ready_path: str, env: dict, timeout: float = 120) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=1)
            return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"{command[:4]} exited: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.3)
    process.kill()
    raise SystemExit(f"{command[:4]} on port {port} did not become ready")


def wrk(binary: str, url: str, body: Path, connections: int, seconds: float) -> dict:
    result = subprocess.run([binary, "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "-s", str(ROOT / "bench" / "wrk_post.lua"),
                             url], env={**os.environ, "WRK_BODY": str(body)}, capture_output=True, text=True)
    line = re.search(r"^WRK (\{.*\})$", result.stdout, re.M)
    if not line:
        raise SystemExit(f"wrk printed no result: {result.stdout[-500:]} {result.stderr[-500:]}")
    data = json.loads(line.group(1))
    return {"rps": data["requests"] / (data["duration_us"] / 1e6), "p50_ms": data["p50_us"] / 1000, "p99_ms": data["p99_us"] / 1000,
            "errors": data["non2xx"] + data["socket_errors"]}


def model_dir(path: str | None) -> str:
    if path:
        return path
    latest = ROOT / "artifacts" / "local" / "latest"
    if not latest.exists():
        from toolkit.config import load_environment
        from toolkit.ml.signing import sign_artifact
        from toolkit.ml.train import DatasetChoice, train_and_save
        from toolkit.paths import ProjectPaths
        from toolkit.signing_keys import local_key_files

        settings = load_environment("local", ROOT).training
        print("no artifacts/local/latest: training one with the local environment's settings", flush=True)
        artifact = train_and_save(DatasetChoice.from_config(settings), settings, ROOT / "artifacts" / "local", env="local").artifact_dir
        sign_artifact(artifact, local_key_files(ProjectPaths(ROOT))[0].read_bytes())  # only signed models are served
    return str(latest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model artifact (default: artifacts/local/latest, trained if missing)")
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported")
    parser.add_argument("--workers", type=int, default=2, help="the multi-worker contender's workers")
    parser.add_argument("--sample-rate", type=float, default=1.0, help="ours: share of predictions logged")
    parser.add_argument("--no-bentoml", action="store_true")
    parser.add_argument("--baseline", metavar="REV", help="also serve ours at this git revision (numeric codes), side by side")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    binary = ensure_wrk()
    model_path = model_dir(args.model)

    from toolkit.aws import client, emulator_environment
    from toolkit.config import load_environment
    from toolkit.feedback_auth import FeedbackCredentials, new_token
    from toolkit.local.moto import start_moto, stop_moto
    from toolkit.ml.artifacts import load_artifact
    from toolkit.ml.table import read_csv
    from toolkit.paths import ProjectPaths
    from toolkit.serving import PUBLIC_KEYS_ENV
    from toolkit.signing_keys import local_key_files

    model = load_artifact(model_path)
    columns = model.preprocessor.columns
    table = read_csv(ROOT / model.manifest.get("dataset", {}).get("path", "data/heart-cleveland.csv"))
    raw = [[record[c] for c in columns] for record in table.records(range(64))]
    preprocessed = model.preprocessor.transform_columns({c: [r[j] for r in raw] for j, c in enumerate(columns)}).tolist()
    bodies = Path(tempfile.mkdtemp(prefix="bench-bodies-"))
    categorical = {c["name"] for c in model.preprocessor.categorical}
    for batch in (1, 64):
        (bodies / f"ours-{batch}.json").write_text(json.dumps({"records": [dict(zip(columns, r, strict=True)) for r in raw[:batch]]}))
        (bodies / f"strings-{batch}.json").write_text(json.dumps({"records": [
            {c: category_string(v) if c in categorical else v for c, v in zip(columns, r, strict=True)} for r in raw[:batch]]}))
        (bodies / f"rows-{batch}.json").write_text(json.dumps({"instances": preprocessed[:batch]}))
    text_model = text_category_model(table, bodies)

    local = load_environment("local", ROOT)
    config = local.model_copy(update={"aws": local.aws.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"})})
    moto = ProjectPaths(Path(tempfile.mkdtemp(prefix="bench-moto-")))
    start_moto(moto, config.aws.endpoint_url)
    client("s3", config).create_bucket(Bucket=config.artifact_store.bucket)
    env = {**os.environ, "MODEL_DIR": model_path, "PYTHONPATH": str(ROOT),
           PUBLIC_KEYS_ENV: local_key_files(ProjectPaths(ROOT))[1].read_text()}
    feedback = config.feedback.model_copy(update={"sample_rate": args.sample_rate, "flush_seconds": 5.0})
    credentials = FeedbackCredentials.new().with_labeller("bench", new_token()).dumps()  # as a deployed server has them
    loop_env = {**env, **emulator_environment(config), "TOOLKIT_ENV": "bench", "TOOLKIT_FEEDBACK": feedback.model_dump_json(),
                "TOOLKIT_PREDICTION_LOG_BUCKET": config.artifact_store.bucket, "TOOLKIT_FEEDBACK_SECRET": credentials}
    serve = [str(ROOT / ".venv" / "bin" / "toolkit"), "serve", "--model", model_path, "--port"]
    text_serve = [str(ROOT / ".venv" / "bin" / "toolkit"), "serve", "--model", str(text_model), "--port"]

    contenders = {  # name: (command, ready path, env, predict path, body kind)
        "ours": (lambda p: serve + [str(p)], "/readyz", loop_env, "/v1/predict", "ours"),
        "ours, loop off": (lambda p: serve + [str(p)], "/readyz", env, "/v1/predict", "ours"),
        **({f"ours x{args.workers}": (lambda p: serve + [str(p), "--workers", str(args.workers)], "/readyz", loop_env, "/v1/predict",
                                      "ours")} if args.workers > 1 else {}),
        "reference": (lambda p: [sys.executable, "-m", "uvicorn", "bench.reference_server:app", "--port", str(p), "--log-level", "warning"],
                      "/docs", env, "/predict", "rows"),
        # As the issue measured it: the venv had neither uvloop nor httptools, so uvicorn ran asyncio and h11.
        "reference, h11": (lambda p: [sys.executable, "-m", "uvicorn", "bench.reference_server:app", "--port", str(p), "--log-level", "warning",
                                      "--loop", "asyncio", "--http", "h11"], "/docs", env, "/predict", "rows"),
        "ours, string categories": (lambda p: serve + [str(p)], "/readyz", loop_env, "/v1/predict", "strings"),
        "ours, text dataset": (lambda p: text_serve + [str(p)], "/readyz", loop_env, "/v1/predict", "text"),
        "reference, text dataset": (lambda p: [sys.executable, "-m", "uvicorn", "bench.reference_server:app", "--port", str(p),
                                               "--log-level", "warning"], "/docs", {**env, "MODEL_DIR": str(text_model)}, "/predict",
                                    "text-rows"),
    }
    if args.baseline:
        tree = baseline_tree(args.baseline)
        contenders[f"ours @{args.baseline}"] = (lambda p: [sys.executable, "-m", "toolkit.cli", "serve", "--model", model_path, "--port",
                                                           str(p)], "/readyz", {**loop_env, "PYTHONPATH": str(tree), "TOOLKIT_ROOT": str(tree)},
                                                "/v1/predict", "ours")
    if not args.no_bentoml:
        venv = ensure_bentoml_venv()
        contenders["BentoML"] = (lambda p: [str(venv / "bin" / "bentoml"), "serve", "bench.bentoml_service:Classifier", "--port", str(p)],
                                 "/readyz", env, "/predict", "rows")
    servers, ports = [], {}
    runs: dict[tuple, list[dict]] = {}
    try:
        for name, (command, ready, environment, _, _) in contenders.items():
            ports[name] = free_port()
            servers.append(start(command(ports[name]), ports[name], ready, environment))
        print(f"model {model.version}; wrk -t1, {args.seconds:.0f} s per run, {args.repeats} interleaved repeats, medians", flush=True)
        for repeat in range(args.repeats):
            for batch, connections in CELLS:
                for name, (_, _, _, path, kind) in contenders.items():
                    result = wrk(binary, f"http://127.0.0.1:{ports[name]}{path}", bodies / f"{kind}-{batch}.json", connections, args.seconds)
                    if result["errors"]:
                        raise SystemExit(f"{name}: {result['errors']} failed requests at batch {batch}, c={connections}")
                    runs.setdefault((name, batch, connections), []).append(result)
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
        shipped = urllib.request.urlopen(f"http://127.0.0.1:{ports['ours']}/metrics", timeout=5).read().decode()
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        stop_moto(moto)
    report(runs, contenders, args, shipped)


def category_string(value) -> str | None:
    """A categorical value as GET /v1/model lists its categories: 4.0 → "4", None stays missing."""
    from toolkit.ml.table import category_key

    return category_key(value)


TEXT_CATEGORIES = {  # heart's codes as the names a dataset of one's own would use
    "cp": {1: "typical angina", 2: "atypical angina", 3: "non-anginal pain", 4: "asymptomatic"},
    "restecg": {0: "normal", 1: "ST-T abnormality", 2: "left ventricular hypertrophy"},
    "slope": {1: "upsloping", 2: "flat", 3: "downsloping"},
    "thal": {3: "normal", 6: "fixed defect", 7: "reversible defect"},
}


def text_category_model(table, bodies: Path) -> Path:
    """heart-cleveland with its categorical codes as names, a model trained on it (15 epochs, signed
    with the local key), and its request bodies (records with the names; the reference's rows)."""
    import csv

    from toolkit.config import load_environment
    from toolkit.ml.artifacts import load_artifact
    from toolkit.ml.signing import sign_artifact
    from toolkit.ml.train import DatasetChoice, train_and_save
    from toolkit.paths import ProjectPaths
    from toolkit.signing_keys import local_key_files

    records = [{k: (TEXT_CATEGORIES[k].get(int(v), "unknown") if k in TEXT_CATEGORIES and v is not None else v) for k, v in r.items()}
               for r in table.records()]
    path = bodies / "heart-text.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    settings = load_environment("local", ROOT).training.model_copy(update={"epochs": 15, "categorical": list(TEXT_CATEGORIES)})
    artifact = train_and_save(DatasetChoice.from_config(settings, path=path), settings, bodies / "text-model", env="bench").artifact_dir
    sign_artifact(artifact, local_key_files(ProjectPaths(ROOT))[0].read_bytes())
    model = load_artifact(artifact)
    columns = model.preprocessor.columns
    rows = [{c: r.get(c) for c in columns} for r in records[:64]]
    preprocessed = model.preprocessor.transform_columns({c: [r[c] for r in rows] for c in columns}).tolist()
    for batch in (1, 64):
        (bodies / f"text-{batch}.json").write_text(json.dumps({"records": rows[:batch]}))
        (bodies / f"text-rows-{batch}.json").write_text(json.dumps({"instances": preprocessed[:batch]}))
    return artifact


def baseline_tree(revision: str) -> Path:
    """This repository at `revision`, checked out (once) under .cache/bench-baseline/<commit>."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True, text=True)
    if commit.returncode != 0:
        raise SystemExit(f"--baseline {revision}: not a revision of this repository")
    tree = ROOT / ".cache" / "bench-baseline" / commit.stdout.strip()
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit.stdout.strip()], cwd=ROOT, check=True,
                       capture_output=True)
    return tree


def report(runs: dict, contenders: dict, args, shipped: str) -> None:
    median = {key: {m: statistics.median(r[m] for r in results) for m in ("rps", "p50_ms", "p99_ms")} for key, results in runs.items()}
    names = list(contenders)
    header = " | ".join(f"{n:>22}" for n in names)
    print(f"\n{'records, conns':>15} | {header}    (requests/s, p99 ms; ×: / reference)")
    rows = []
    for batch, connections in CELLS:
        ref = median[("reference", batch, connections)]
        cells = []
        for name in names:
            m = median[(name, batch, connections)]
            cells.append(f"{m['rps']:>8,.0f} {m['p99_ms']:>5.1f} ({m['rps'] / ref['rps']:.2f}×)")
        print(f"{f'{batch}, c={connections}':>15} | " + " | ".join(f"{c:>22}" for c in cells))
        rows.append({"records": batch, "connections": connections, **{n: median[(n, batch, connections)] for n in names}})
    workers = f"ours x{args.workers}"
    checks = []
    for reference in ("reference", "reference, h11"):
        checks += [(f"single record, c={c}: ours / {reference} (≥ 1.5×)", median[("ours", 1, c)]["rps"] / median[(reference, 1, c)]["rps"])
                   for c in (16, 64)]
        checks.append((f"64 records, c=16: ours / {reference} (≥ 1.5×)",
                       median[("ours", 64, 16)]["rps"] / median[(reference, 64, 16)]["rps"]))
    checks += [(f"single record, c={c}: ours, string categories / reference (≥ 1.5×)",
                median[("ours, string categories", 1, c)]["rps"] / median[("reference", 1, c)]["rps"]) for c in (16, 64)]
    checks += [(f"single record, c={c}: ours, text dataset / its reference (≥ 1.5×)",
                median[("ours, text dataset", 1, c)]["rps"] / median[("reference, text dataset", 1, c)]["rps"]) for c in (16, 64)]
    baseline = next((n for n in names if n.startswith("ours @")), None)
    if baseline:
        checks += [(f"{'single record' if b == 1 else '64 records'}, c={c}: ours / {baseline} (≥ 0.95)",
                    median[("ours", b, c)]["rps"] / median[(baseline, b, c)]["rps"]) for b, c in CELLS]
    if "BentoML" in names:
        checks += [(f"single record, c={c}: ours / BentoML (≥ 4×)", median[("ours", 1, c)]["rps"] / median[("BentoML", 1, c)]["rps"])
                   for c in (16, 64)]
    if workers in names:
        checks += [(f"{'single record' if b == 1 else '64 records'}, c={c}: {workers} / ours (≥ 1.6×)",
                    median[(workers, b, c)]["rps"] / median[("ours", b, c)]["rps"]) for b, c in CELLS]
    checks += [(f"{'single record' if b == 1 else '64 records'}, c={c}: p99 ours / reference (≤ 1.0)",
                median[("ours", b, c)]["p99_ms"] / median[("reference", b, c)]["p99_ms"]) for b, c in CELLS]
    print()
    for what, value in checks:
        print(f"{what:<55} {value:.2f}")
    print("ours, prediction log:", ", ".join(line for line in shipped.splitlines() if line.startswith("toolkit_prediction_log_records_total")))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"cells": rows, "checks": dict(checks)}, indent=2))


if __name__ == "__main__":
    main()
