"""Classification metrics in plain numpy.

Binary metrics treat class index 1 as positive. With more classes, precision, recall, F1 and
ROC AUC are macro averages (one-vs-rest), as scikit-learn's `average="macro"`.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve for binary labels (Mann-Whitney U, ties count half).
    NaN when only one class is present."""
    y_true = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y_true.sum()), int((~y_true).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values, and its average 1-based rank.
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def classification_report(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict:
    """accuracy, precision, recall, f1, roc_auc and the confusion matrix.
    `proba` is (n, n_classes) class probabilities."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.argmax(proba, axis=1)
    matrix = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    actual = matrix.sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if n_classes == 2:
        precision_v, recall_v, f1_v = precision[1], recall[1], f1[1]
        auc = roc_auc(y_true == 1, proba[:, 1])
    else:
        precision_v, recall_v, f1_v = precision.mean(), recall.mean(), f1.mean()
        aucs = [roc_auc(y_true == k, proba[:, k]) for k in range(n_classes)]
        aucs = [a for a in aucs if not np.isnan(a)]
        auc = float(np.mean(aucs)) if aucs else float("nan")
    return {
        "accuracy": float(tp.sum() / max(len(y_true), 1)),
        "precision": float(precision_v),
        "recall": float(recall_v),
        "f1": float(f1_v),
        "roc_auc": float(auc),
        "confusion_matrix": matrix.tolist(),
        "n": int(len(y_true)),
    }


SCALAR_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")


REGRESSION_METRICS = ("r2", "mae", "rmse")


def regression_report(y: np.ndarray, predicted: np.ndarray) -> dict:
    """R² (1 − residual / total sum of squares; 0 is predicting the mean, below 0 worse), MAE and
    RMSE in the label's units."""
    y, predicted = np.asarray(y, dtype=np.float64), np.asarray(predicted, dtype=np.float64).reshape(-1)
    residual = y - predicted
    total = float(np.sum(np.square(y - y.mean()))) if len(y) else 0.0
    return {"n": int(len(y)), "r2": 1.0 - float(np.sum(np.square(residual))) / total if total > 0 else float("nan"),
            "mae": float(np.mean(np.abs(residual))) if len(y) else float("nan"),
            "rmse": float(np.sqrt(np.mean(np.square(residual)))) if len(y) else float("nan")}


def summarize_folds(reports: list[dict]) -> dict:
    """Mean and standard deviation of each scalar metric over cross-validation folds."""
    summary = {}
    for key in SCALAR_METRICS if "accuracy" in reports[0] else REGRESSION_METRICS:
        values = np.array([r[key] for r in reports], dtype=float)
        summary[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values)), "folds": values.tolist()}
    return summary
