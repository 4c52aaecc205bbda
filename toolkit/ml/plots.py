"""Training-curve PNGs (matplotlib is imported here only, and only when a plot is drawn)."""

from __future__ import annotations

from pathlib import Path

from toolkit.ml.nn.training import History


def plot_training_curves(history: History, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
    return path
