"""The serving hot path's preprocessing: a batch of all-number rows to the network's features in a
few vectorized numpy operations, with exactly the result of `Preprocessor.transform_table`.

`Preprocessor.transform_table` is general (texts, CSV columns, per-column error messages) and
costs ~30 numpy calls per column, which dominates a single-record request. `RowEncoder` takes
the common request instead: rows whose values are numbers or None (missing), as one float64
matrix in the preprocessor's column order. It answers None for anything else (a text value, a
bool, a number out of float32 range), and the caller takes the general path, which also names
the problem.

Contract: `encode(rows)` with `rows` a list of equal-length tuples/lists in `columns` order;
returns a new (n, width) float32 array, or None.
"""

from __future__ import annotations

import math
from itertools import chain

import numpy as np

from toolkit.ml.preprocess import Preprocessor

FLOAT32_MAX = float(np.finfo(np.float32).max)
PLAIN = {int, float, type(None)}
FEW_ROWS = 4  # up to this many rows, a Python loop checks values faster than numpy calls


class RowEncoder:
    def __init__(self, preprocessor: Preprocessor) -> None:
        columns = preprocessor.columns
        self.columns = columns
        self.width = preprocessor.width
        self.numeric_at = np.array([columns.index(n["name"]) for n in preprocessor.numeric], dtype=np.intp)
        self.mean = np.array([n["mean"] for n in preprocessor.numeric], dtype=np.float64)
        self.std = np.array([n["std"] for n in preprocessor.numeric], dtype=np.float64)
        # One-hot as one comparison: output column j is 1 where input column source[j] equals key[j],
        # the number category j stands for (3 and 3.0 alike; NaN, never equal, for a category that is
        # not a number, or is the same number as a later one: the last such category wins). A missing
        # value (NaN) sets its column's fill category instead.
        source, keys, fills = [], [], []
        offset = len(preprocessor.numeric)
        for spec in preprocessor.categorical:
            column = columns.index(spec["name"])
            numbers = [_as_number(category) for category in spec["categories"]]
            last = {number: i for i, number in enumerate(numbers) if number is not None}
            source += [column] * len(numbers)
            keys += [number if number is not None and last[number] == i else math.nan for i, number in enumerate(numbers)]
            if spec["fill"] in spec["categories"]:
                fills.append((column, offset + spec["categories"].index(spec["fill"])))
            offset += len(numbers)
        self.one_hot = slice(len(preprocessor.numeric), offset)
        self.source = np.array(source, dtype=np.intp)
        self.keys = np.array(keys, dtype=np.float64)
        self.fill_source = np.array([c for c, _ in fills], dtype=np.intp)
        self.fill_target = np.array([t for _, t in fills], dtype=np.intp)

    def encode(self, rows: list) -> np.ndarray | None:
        # Only ints, floats within float32's range and None (missing): not a bool, a text ("1.5" would
        # convert) or a container. Checked value by value for a few rows, in bulk for more.
        few = len(rows) <= FEW_ROWS
        if not (_plain_numbers(rows) if few else set(map(type, chain.from_iterable(rows))) <= PLAIN):
            return None
        try:
            matrix = np.array(rows, dtype=np.float64)  # None → NaN
        except (OverflowError, ValueError):  # an int beyond float64, or rows of different lengths
            return None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.columns) or (not few and (np.abs(matrix) > FLOAT32_MAX).any()):
            return None
        out = np.zeros((len(rows), self.width), dtype=np.float32)
        standardized = (matrix[:, self.numeric_at] - self.mean) / self.std
        standardized[np.isnan(standardized)] = 0.0  # a missing number is the mean: 0 once standardized
        out[:, :len(self.numeric_at)] = standardized
        out[:, self.one_hot] = matrix[:, self.source] == self.keys  # an unseen category stays all zeros
        missing = np.isnan(matrix[:, self.fill_source])
        if missing.any():
            hit_rows, which = np.nonzero(missing)
            out[hit_rows, self.fill_target[which]] = 1.0
        return out


def _plain_numbers(rows: list) -> bool:
    """Every value an int or a float within float32's range, or None."""
    for row in rows:
        for value in row:
            kind = value.__class__
            if kind is float or kind is int:
                if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                    return False
            elif value is not None:
                return False
    return True


def _as_number(category: str) -> float | None:
    """The number a category's canonical key stands for ('3' → 3.0), if it is a finite number."""
    try:
        number = float(category)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
