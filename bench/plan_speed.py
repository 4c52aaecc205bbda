"""`make plan ENV=local` cold and warm (issue 31: warm under 20 s on this machine, from about 31 s).

In one run, interleaved: cold (the synthesis and init stamps removed, as on a fresh checkout with
the providers installed) and warm (a second plan, nothing changed), each `toolkit plan --env local`
in its own process as `make plan` runs it, with the toolkit's own breakdown (synthesis, Terraform,
checkov beside it). Needs the local stack's emulator (`toolkit plan` starts it).

    python bench/plan_speed.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "cdktf.out" / "stacks" / "platform-local"
TARGET_S = 20.0


def plan_once() -> tuple[float, dict]:
    start = time.perf_counter()
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "toolkit"), "plan", "--env", "local", "--format", "json"],
                            capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 3):
        sys.exit(f"toolkit plan failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return seconds, json.loads(result.stdout)["timings"]


def make_cold() -> None:
    for stamp in (STACK / ".toolkit-synth-inputs", STACK / ".terraform" / "toolkit-init.sha256"):
        stamp.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    os.chdir(ROOT)
    runs: dict[str, list[tuple[float, dict]]] = {"cold": [], "warm": []}
    for _ in range(args.repeats):
        make_cold()
        runs["cold"].append(plan_once())
        runs["warm"].append(plan_once())
    summary = {}
    for kind, results in runs.items():
        walls = [wall for wall, _ in results]
        median = statistics.median(walls)
        summary[kind] = {"median_s": round(median, 1), "runs_s": [round(w, 1) for w in walls], "timings": [t for _, t in results]}
        breakdown = results[walls.index(sorted(walls)[len(walls) // 2])][1]
        parts = ", ".join(f"{k.removesuffix('_s')} {v}{' s' if isinstance(v, (int, float)) else ''}" for k, v in breakdown.items())
        print(f"{kind:<5} median {median:5.1f} s (runs {', '.join(f'{w:.1f}' for w in walls)}): {parts}")
    warm = summary["warm"]["median_s"]
    print(f"warm target < {TARGET_S:.0f} s: {'met' if warm < TARGET_S else 'NOT met'} ({warm} s); before this change every run was cold")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
