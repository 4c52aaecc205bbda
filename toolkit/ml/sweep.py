"""Hyperparameter sweeps: the settings `training.sweep` asks for, each cross-validated over the rows
outside the test split, ranked by one metric.

A sweep is a list of work items, one per (setting, fold): item `index` is setting `index // folds`,
fold `index % folds`. The list follows from the spec alone (and the seed for a random draw), so a
process, or a pod of an Indexed Job given only JOB_COMPLETION_INDEX, finds its item without being
told more; each item's result is a small JSON document stored under the sweep's id, which names
the spec, the base settings and the dataset's bytes. A sweep run again with the same id skips the
items it has results for.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass

import numpy as np

from toolkit.config import SweepConfig, TrainingConfig
from toolkit.errors import DataError
from toolkit.ml.data import Dataset, stratified_split
from toolkit.ml.train import fold_report, fold_rows

LEADERBOARD = "leaderboard.json"  # in the sweep's local directory: the ranking `toolkit retrain --sweep ID` reads
HIGHER_IS_BETTER = {"accuracy": True, "roc_auc": True, "f1": True, "r2": True, "rmse": False}
CLASSIFICATION_METRICS, REGRESSION_METRICS = ("accuracy", "roc_auc", "f1"), ("r2", "rmse")


def settings_list(spec: SweepConfig) -> list[dict]:
    """Every setting the sweep tries, in order: the grid's combinations (the space's keys in order,
    the last varying fastest), or `trials` of them drawn without replacement with `seed`."""
    axes = spec.space.axes()
    grid = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    if spec.method == "grid":
        return grid
    picked = np.random.default_rng(spec.seed).choice(len(grid), size=spec.trial_count(), replace=False)
    return [grid[int(i)] for i in picked]


def sweep_id(spec: SweepConfig, settings: TrainingConfig, dataset_sha256: str) -> str:
    """Names what a result depends on: the spec, the base settings (without the spec) and the data."""
    basis = {"spec": spec.model_dump(mode="json"), "settings": settings.model_dump(mode="json", exclude={"sweep", "device"}),
             "data": dataset_sha256}
    return "sweep-" + hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:12]


def metric_of(spec: SweepConfig, regression: bool) -> str:
    metric = spec.metric if spec.metric != "auto" else ("r2" if regression else "accuracy")
    allowed = REGRESSION_METRICS if regression else CLASSIFICATION_METRICS
    if metric not in allowed:
        kind = "a regressor" if regression else "a classifier"
        raise DataError(f"training.sweep.metric {metric} does not rank {kind}; use one of {', '.join(allowed)} (or auto).")
    return metric


@dataclass(frozen=True)
class WorkItem:
    index: int
    trial: int
    fold: int
    setting: dict


def work_items(spec: SweepConfig) -> list[WorkItem]:
    return [WorkItem(trial * spec.folds + fold, trial, fold, setting)
            for trial, setting in enumerate(settings_list(spec)) for fold in range(spec.folds)]


def sweep_rows(dataset: Dataset, settings: TrainingConfig) -> np.ndarray:
    """The rows a sweep cross-validates over: all but the test split `toolkit train` holds out, so
    the final model's test figures stay untouched by the choice of setting."""
    train, val, _ = stratified_split(dataset.strata, settings.validation_fraction, settings.test_fraction, settings.seed)
    return np.sort(np.concatenate([train, val]))


def run_item(dataset: Dataset, settings: TrainingConfig, spec: SweepConfig, item: WorkItem) -> dict:
    """Train and score one (setting, fold): the result document stored for `item.index`."""
    started = time.perf_counter()
    trial_settings = settings.model_copy(update=item.setting)
    train_rows, held_out = fold_rows(dataset, sweep_rows(dataset, settings), spec.folds, settings.seed)[item.fold]
    report = fold_report(dataset, trial_settings, train_rows, held_out, item.fold)
    keys = REGRESSION_METRICS if dataset.regression else CLASSIFICATION_METRICS
    return {"index": item.index, "trial": item.trial, "fold": item.fold, "setting": item.setting,
            "metrics": {key: report[key] for key in keys}, "rows": len(held_out),
            "seconds": round(time.perf_counter() - started, 3)}


def leaderboard(results: list[dict], metric: str, folds: int) -> list[dict]:
    """One row per setting with every fold done: the mean and std of each metric, best first.
    A setting with a failed (missing) fold is left out and counted in `incomplete`."""
    by_trial: dict[int, list[dict]] = {}
    for result in results:
        by_trial.setdefault(result["trial"], []).append(result)
    rows = []
    for trial, done in sorted(by_trial.items()):
        if len(done) < folds:
            continue
        metrics = {key: [r["metrics"][key] for r in done] for key in done[0]["metrics"]}
        rows.append({"trial": trial, "setting": done[0]["setting"],
                     **{key: float(np.nanmean(values)) for key, values in metrics.items()},
                     **{f"{key}_std": float(np.nanstd(values)) for key, values in metrics.items()}})
    sign = -1 if HIGHER_IS_BETTER[metric] else 1
    rows.sort(key=lambda row: (sign * row[metric], row["trial"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def markdown(board: list[dict], metric: str, limit: int = 20) -> str:
    """The leaderboard as a markdown table (the best `limit` rows)."""
    if not board:
        return "(no setting finished every fold)"
    axes = list(board[0]["setting"])
    others = [key for key in board[0] if key not in ("trial", "setting", "rank") and not key.endswith("_std")]
    header = ["rank", "trial", *axes, f"{metric} (mean ± std)", *[k for k in others if k != metric]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in board[:limit]:
        cells = [str(row["rank"]), str(row["trial"]), *[_cell(row["setting"][a]) for a in axes],
                 f"{row[metric]:.4f} ± {row[metric + '_std']:.4f}", *[f"{row[k]:.4f}" for k in others if k != metric]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_setting(setting: dict) -> str:
    return "  ".join(f"{name} {_cell(value)}" for name, value in setting.items())


def _cell(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def plot(board: list[dict], metric: str, path, title: str) -> None:
    """One panel per hyperparameter: the metric of each setting against that hyperparameter's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_names = list(board[0]["setting"]) if board else []
    figure, panels = plt.subplots(1, max(1, len(axes_names)), figsize=(4 * max(1, len(axes_names)), 3.4), squeeze=False)
    for panel, name in zip(panels[0], axes_names, strict=False):
        labels = sorted({_cell(row["setting"][name]) for row in board}, key=_sort_key)
        positions = {label: i for i, label in enumerate(labels)}
        xs = [positions[_cell(row["setting"][name])] for row in board]
        jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(xs))
        panel.scatter(np.array(xs) + jitter, [row[metric] for row in board], s=18, alpha=0.75)
        best = board[0]
        panel.scatter([positions[_cell(best["setting"][name])]], [best[metric]], s=80, facecolors="none", edgecolors="red",
                      label="best")
        panel.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 4 else 0)
        panel.set_xlabel(name)
        panel.set_ylabel(f"{metric} (mean over folds)")
        panel.grid(alpha=0.3)
    panels[0][0].legend(loc="best", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _sort_key(label: str):
    try:
        return (0, float(label.split(",")[0]), label)
    except ValueError:
        return (1, 0.0, label)
