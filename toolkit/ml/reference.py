"""Reference distributions stored in the artifact at training time, and the population stability
index (PSI) that compares live traffic with them.

Bins are defined on the model's own feature matrix (the preprocessed float32 columns), so serving
bins what it already computed: a numeric feature by quantile edges of its standardized training
values, a categorical feature by which one-hot column is set (a last bin for "none": missing and
unseen categories). The predicted classes have one bin per class.

PSI = Σ (live − reference) · ln(live / reference) over the bins, shares smoothed by EPSILON.
Rule of thumb: < 0.1 stable, 0.1–0.2 moderate shift, > 0.2 significant.
"""

from __future__ import annotations

import numpy as np

EPSILON = 1e-4


def numeric_edges(values: np.ndarray, bins: int) -> list[float]:
    """Inner quantile edges (bins-1 of them, deduplicated) of one standardized training column."""
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    return [float(e) for e in edges]


def reference_distributions(x: np.ndarray, feature_names: list[str], numeric: list[str], bins: int = 10) -> dict:
    """{"features": [{"name", "columns": [i…], "edges" | "categories", "shares": [...]}]} for the training rows x."""
    features = []
    for i, name in enumerate(numeric):
        edges = numeric_edges(x[:, i], bins)
        counts = np.bincount(np.searchsorted(edges, x[:, i], side="right"), minlength=len(edges) + 1)
        features.append({"name": name, "kind": "numeric", "column": i, "edges": edges, "shares": _shares(counts)})
    columns_by_feature: dict[str, list[int]] = {}
    for j, feature_name in enumerate(feature_names[len(numeric):], start=len(numeric)):
        columns_by_feature.setdefault(feature_name.split("=")[0], []).append(j)
    for name, columns in columns_by_feature.items():
        codes = categorical_codes(x, columns)
        counts = np.bincount(codes, minlength=len(columns) + 1)
        features.append({"name": name, "kind": "categorical", "columns": columns, "shares": _shares(counts)})
    return {"bins": bins, "features": features}


def categorical_codes(x: np.ndarray, columns: list[int]) -> np.ndarray:
    """The set one-hot column's position per row; len(columns) for none set (missing or unseen)."""
    block = x[:, columns]
    return np.where(block.any(axis=1), block.argmax(axis=1), len(columns))


def feature_bins(x: np.ndarray, reference: dict) -> np.ndarray:
    """(rows, features) bin index of each row for each reference feature."""
    out = np.empty((len(x), len(reference["features"])), dtype=np.int16)
    for k, feature in enumerate(reference["features"]):
        if feature["kind"] == "numeric":
            out[:, k] = np.searchsorted(feature["edges"], x[:, feature["column"]], side="right")
        else:
            out[:, k] = categorical_codes(x, feature["columns"])
    return out


def psi(live_counts: np.ndarray, reference_shares: np.ndarray) -> float:
    total = live_counts.sum()
    if total == 0:
        return 0.0
    live = np.maximum(live_counts / total, EPSILON)
    reference = np.maximum(np.asarray(reference_shares, dtype=np.float64), EPSILON)
    return float(np.sum((live - reference) * np.log(live / reference)))


def _shares(counts: np.ndarray) -> list[float]:
    return [round(float(c), 6) for c in counts / max(counts.sum(), 1)]


def value_distribution(values: np.ndarray, bins: int = 10) -> dict:
    """A regressor's predictions on the test split as {"edges", "shares"}: what serving compares the
    distribution of its answers with (the drift of the predictions, as class shares are for a classifier)."""
    edges = numeric_edges(values, bins)
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return {"edges": edges, "shares": [round(float(c / max(len(values), 1)), 6) for c in counts]}
