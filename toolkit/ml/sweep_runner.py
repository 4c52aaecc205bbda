"""Running a sweep's work items here, in parallel processes, with the results kept under the sweep's
id so a run that stops half-way resumes (toolkit/ml/sweep.py has the items and the leaderboard)."""

from __future__ import annotations

import json
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Protocol

from toolkit.config import SweepConfig, TrainingConfig
from toolkit.ml.sweep import WorkItem, run_item


class ResultStore(Protocol):
    def done(self) -> dict[int, dict]: ...

    def put(self, index: int, result: dict) -> None: ...


class DirectoryResults:
    """<directory>/<index>.json, each written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def done(self) -> dict[int, dict]:
        return {int(path.stem): json.loads(path.read_text()) for path in self.directory.glob("*.json") if path.stem.isdigit()}

    def put(self, index: int, result: dict) -> None:
        staging = self.directory / f".{index}.json.tmp"
        staging.write_text(json.dumps(result, sort_keys=True) + "\n")
        staging.replace(self.directory / f"{index}.json")


# ---------------------------------------------------------------- worker processes

_WORKER: dict = {}


def _start_worker(dataset_choice, settings: TrainingConfig, spec: SweepConfig) -> None:
    _WORKER["dataset"] = dataset_choice.load()
    _WORKER["settings"], _WORKER["spec"] = settings, spec


def _run(item: WorkItem) -> dict:
    return run_item(_WORKER["dataset"], _WORKER["settings"], _WORKER["spec"], item)


def run_local(dataset_choice, settings: TrainingConfig, spec: SweepConfig, items: list[WorkItem], store: ResultStore,
              parallel: int, on_result: Callable[[dict], None] = lambda result: None) -> dict[int, dict]:
    """Run the items `store` has no result for in `parallel` processes; every result is stored as it
    arrives. Returns every result (the earlier ones too)."""
    results = store.done()
    pending = [item for item in items if item.index not in results]
    if not pending:
        return results
    # Forked, not spawned: a worker starts in milliseconds instead of re-importing NumPy (the bundled
    # data's fits take ~20 ms each). It keeps NumPy's BLAS threads: for wide networks, run with
    # OPENBLAS_NUM_THREADS=1 so that the processes do not oversubscribe the cores.
    with ProcessPoolExecutor(max_workers=parallel, mp_context=get_context("fork"), initializer=_start_worker,
                             initargs=(dataset_choice, settings, spec)) as pool:
        running = {pool.submit(_run, item) for item in pending[:parallel * 2]}
        queued = iter(pending[parallel * 2:])
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                store.put(result["index"], result)
                results[result["index"]] = result
                on_result(result)
                following = next(queued, None)
                if following is not None:
                    running.add(pool.submit(_run, following))
    return results

