"""Report PNGs: training curves, the confusion matrix, feature importance (matplotlib is imported
here only, and only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.ml.nn.training import History


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=100, metadata={"Software": None})
    _pyplot().close(fig)
    return path


def plot_confusion_matrix(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    """Counts, with each true class's row shaded by its share (rare classes stay readable)."""
    plt = _pyplot()
    counts = np.asarray(matrix, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(classes) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size), constrained_layout=True)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classes))
    ax.set_xticks(ticks, classes, rotation=45 if max(map(len, classes)) > 3 else 0, ha="right")
    ax.set_yticks(ticks, classes)
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, f"{int(value)}", ha="center", va="center", color="white" if shares[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _save(fig, path)


def plot_predicted_vs_true(y: np.ndarray, predicted: np.ndarray, path: Path, title: str) -> Path:
    """A regressor's predictions against the true values, with the diagonal where they would agree."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), constrained_layout=True)
    ax.scatter(y, predicted, s=12, alpha=0.6)
    low, high = float(min(y.min(), predicted.min())), float(max(y.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="grey", linestyle=":", label="predicted = true")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_importance(importance: list[dict], path: Path, title: str) -> Path:
    """Permutation importance per feature (mean drop in accuracy, ± its std over repeats), largest on top."""
    plt = _pyplot()
    ordered = sorted(importance, key=lambda item: item["mean"])
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.3 * len(ordered) + 1.5)), constrained_layout=True)
    ax.barh([item["feature"] for item in ordered], [item["mean"] for item in ordered], xerr=[item["std"] for item in ordered],
            color="tab:blue", alpha=0.8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("accuracy lost when the feature is shuffled")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_training_curves(history: History, path: Path, title: str) -> Path:
    plt = _pyplot()
    epochs = history.series("epoch")
    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_ax.plot(epochs, history.series("loss"), label="train loss")
    if history.series("val_loss"):
        loss_ax.plot(epochs, history.series("val_loss"), label="validation loss")
    for key, name in (("val_accuracy", "validation accuracy"), ("val_roc_auc", "validation ROC AUC")):
        if history.series(key):
            metric_ax.plot(epochs, history.series(key), label=name)
    for ax in (loss_ax, metric_ax):
        if history.best_epoch:
            ax.axvline(history.best_epoch, color="grey", linestyle=":", label=f"best epoch ({history.best_epoch})")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    loss_ax.set_title("loss")
    metric_ax.set_title("validation metrics")
    metric_ax.set_ylim(0, 1.02)
    fig.suptitle(title)
    return _save(fig, path)
