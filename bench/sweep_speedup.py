"""Sweep speed-up: the local environment's sweep (24 settings × 3 folds of the bundled heart data)
with --parallel 2 against --parallel 1, in one run, each from an empty result directory (nothing
resumed), 3 interleaved repeats, medians. Target (issue 29): at least 1.7× on this 2-core machine.

It then reproduces the best setting alone: its folds trained again in this process, one by one,
must give the sweep's figures exactly.

    python bench/sweep_speedup.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from toolkit.config import load_environment  # noqa: E402
from toolkit.ml import sweep as sweeps  # noqa: E402
from toolkit.ml.sweep_runner import DirectoryResults, run_local  # noqa: E402
from toolkit.ml.train import DatasetChoice  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--env", default="local")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    settings = load_environment(args.env).training
    spec = settings.sweep
    choice = DatasetChoice.from_config(settings)
    items = sweeps.work_items(spec)
    print(f"{args.env}: {spec.trial_count()} settings × {spec.folds} folds = {len(items)} fits on {choice.path.name}, "
          f"{os.cpu_count()} cores")
    seconds: dict[int, list[float]] = {1: [], 2: []}
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for parallel in (1, 2):
                store = DirectoryResults(Path(scratch) / f"{repeat}-{parallel}")
                start = time.perf_counter()
                results = run_local(choice, settings, spec, items, store, parallel)
                seconds[parallel].append(time.perf_counter() - start)
                print(f"  repeat {repeat + 1}: --parallel {parallel}: {seconds[parallel][-1]:.2f} s", flush=True)
    median = {p: statistics.median(s) for p, s in seconds.items()}
    speedup = median[1] / median[2]
    print(f"\nmedian --parallel 1: {median[1]:.2f} s   --parallel 2: {median[2]:.2f} s   speed-up {speedup:.2f}× "
          f"(target ≥ 1.7×: {'met' if speedup >= 1.7 else 'NOT met'})")

    dataset = choice.load()
    metric = sweeps.metric_of(spec, dataset.regression)
    board = sweeps.leaderboard(list(results.values()), metric, spec.folds)
    best = board[0]
    alone = [sweeps.run_item(dataset, settings, spec, item) for item in items if item.trial == best["trial"]]
    again = sweeps.leaderboard(alone, metric, spec.folds)[0]
    same = all(again[key] == best[key] for key in best if key not in ("rank",))
    print(f"best: trial {best['trial']} ({sweeps.markdown_setting(best['setting'])}), {metric} {best[metric]:.4f} ± "
          f"{best[metric + '_std']:.4f}; trained alone: {again[metric]:.4f} ± {again[metric + '_std']:.4f} "
          f"({'the same' if same else 'DIFFERENT'})")
    if args.json_path:
        Path(args.json_path).write_text(json.dumps({"seconds": seconds, "median": median, "speedup": speedup,
                                                    "best": best, "reproduced": same}, indent=2))


if __name__ == "__main__":
    main()
