"""The serving hot path's preprocessing: a batch of rows to the network's features in a few
vectorized numpy operations, with exactly the result of `Preprocessor.transform_table`.

`Preprocessor.transform_table` is general (CSV columns, per-column error messages) and costs ~30
numpy calls per column, which dominates a single-record request. `RowEncoder` takes the common
requests instead: numbers or None (missing) for numeric features, and for categorical ones also
the category as a text, as `/v1/model` lists it ("4", "Río Bajo"), in any spelling the general
path reads the same (" 4.0 ", "NA" for missing; an unseen category encodes as all zeros there
and here). It answers None for anything the general path would refuse or might answer otherwise
(a text for a numeric feature, a bool, a number out of float32 range, a value that overflows once
standardized), and the caller takes the general path, which also names the problem.

Contract: `encode(rows)` with `rows` a list of equal-length tuples/lists in `columns` order;
returns a new (n, width) float32 array of finite values, or None.
"""

from __future__ import annotations

import math
from itertools import chain

import numpy as np

from toolkit.ml.preprocess import Preprocessor
from toolkit.ml.table import MISSING_TOKENS, category_key

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
        self.texts: dict[int, dict[str, int]] = {}  # input column → {category that is not a number: output column}
        for spec in preprocessor.categorical:
            column = columns.index(spec["name"])
            numbers = [_as_number(category) for category in spec["categories"]]
            last = {number: i for i, number in enumerate(numbers) if number is not None}
            source += [column] * len(numbers)
            keys += [number if number is not None and last[number] == i else math.nan for i, number in enumerate(numbers)]
            self.texts[column] = {category: offset + i for i, (category, number) in enumerate(zip(spec["categories"], numbers, strict=True))
                                  if number is None}
            if spec["fill"] in spec["categories"]:
                fills.append((column, offset + spec["categories"].index(spec["fill"])))
            offset += len(numbers)
        self.one_hot = slice(len(preprocessor.numeric), offset)
        self.source = np.array(source, dtype=np.intp)
        self.keys = np.array(keys, dtype=np.float64)
        self.fill_source = np.array([c for c, _ in fills], dtype=np.intp)
        self.fill_target = np.array([t for _, t in fills], dtype=np.intp)
        # For a few rows, value by value in Python (numpy's per-call cost is most of a one-record
        # request): each numeric feature's (column, mean, std), and each categorical one's (column,
        # {category as a number, and as the text /v1/model lists: output column}, fill's output column).
        self.numeric_specs = [(columns.index(n["name"]), n["mean"], n["std"]) for n in preprocessor.numeric]
        self.categorical_specs = []
        fill_of, offset = dict(fills), len(preprocessor.numeric)
        for spec in preprocessor.categorical:
            column = columns.index(spec["name"])
            outputs = range(offset, offset + len(spec["categories"]))
            lookup = {number: j for j, number in zip(outputs, keys[offset - len(preprocessor.numeric):], strict=False) if not math.isnan(number)}
            lookup.update(zip(spec["categories"], outputs, strict=True))
            self.categorical_specs.append((column, lookup, fill_of.get(column)))
            offset += len(spec["categories"])

    def encode(self, rows: list) -> np.ndarray | None:
        # Only ints, floats within float32's range and None (missing): not a bool, a text ("1.5" would
        # convert) or a container. Checked value by value for a few rows, in bulk for more.
        few = len(rows) <= FEW_ROWS
        if few:
            return self._encode_few(rows)
        if not set(map(type, chain.from_iterable(rows))) <= PLAIN:
            return self._encode_with_texts(rows)
        try:
            matrix = np.array(rows, dtype=np.float64)  # None → NaN
        except (OverflowError, ValueError):  # an int beyond float64, or rows of different lengths
            return None
        if matrix.ndim != 2 or matrix.shape[1] != len(self.columns) or (not few and (np.abs(matrix) > FLOAT32_MAX).any()):
            return None
        return self._features(matrix, ())

    def _encode_few(self, rows: list) -> np.ndarray | None:
        """A few rows, value by value: the same numbers as `_features` (float64 arithmetic, then float32)."""
        width, features = len(self.columns), []
        for row in rows:
            if row.__class__ not in (list, tuple) or len(row) != width:
                return None
            out = [0.0] * self.width
            for j, (c, mean, std) in enumerate(self.numeric_specs):
                value = row[c]
                kind = value.__class__
                if kind is float or kind is int:
                    if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                        return None
                    out[j] = (value - mean) / std
                elif value is not None:
                    return None  # a text, a bool, a container: the general path answers it
            for c, lookup, fill in self.categorical_specs:
                value = row[c]
                kind = value.__class__
                if value is None:
                    hit = fill
                elif kind is float or kind is int:
                    if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                        return None
                    hit = lookup.get(value)
                elif kind is str:
                    hit = lookup.get(value)
                    if hit is None:
                        number, key = _read_category(value)
                        hit = fill if number is None and key is None else lookup.get(number if key is None else key)
                else:
                    return None
                if hit is not None:
                    out[hit] = 1.0
            features.append(out)
        with np.errstate(over="ignore"):  # beyond float32 once standardized: inf, refused just below
            matrix = np.array(features, dtype=np.float32)
        return matrix if np.isfinite(matrix).all() else None

    def _encode_with_texts(self, rows: list) -> np.ndarray | None:
        """Rows with texts for categorical features: each text becomes the number it spells (the
        category of that number), missing, or a category that is not a number (its output column,
        set after the numeric one-hot; in the matrix a value no numeric category equals)."""
        width, texts, hits, prepared = len(self.columns), self.texts, [], []
        for r, row in enumerate(rows):
            if row.__class__ not in (list, tuple) or len(row) != width:
                return None
            values = list(row)
            for c, value in enumerate(values):
                kind = value.__class__
                if kind is str:
                    columns = texts.get(c)
                    if columns is None:
                        return None  # a text for a numeric feature: the general path refuses it (422)
                    number, key = _read_category(value)
                    if key is not None:
                        hit = columns.get(key)
                        if hit is not None:
                            hits.append((r, hit))
                        values[c] = math.inf  # equal to no numeric category, and not missing
                    else:
                        values[c] = number  # None: missing
                elif kind is float or kind is int:
                    if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                        return None
                elif value is not None:
                    return None
            prepared.append(values)
        return self._features(np.array(prepared, dtype=np.float64), hits)

    def _features(self, matrix: np.ndarray, text_hits) -> np.ndarray | None:
        out = np.zeros((len(matrix), self.width), dtype=np.float32)
        standardized = (matrix[:, self.numeric_at] - self.mean) / self.std
        standardized[np.isnan(standardized)] = 0.0  # a missing number is the mean: 0 once standardized
        out[:, :len(self.numeric_at)] = standardized
        out[:, self.one_hot] = matrix[:, self.source] == self.keys  # an unseen category stays all zeros
        missing = np.isnan(matrix[:, self.fill_source])
        if missing.any():
            hit_rows, which = np.nonzero(missing)
            out[hit_rows, self.fill_target[which]] = 1.0
        for row, column in text_hits:
            out[row, column] = 1.0
        # A value inside float32 can overflow once standardized (a huge value of a low-variance
        # feature): the general path refuses it with 422, so this path must not answer it.
        return out if np.isfinite(out).all() else None


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


def _read_category(text: str) -> tuple[float | None, str | None]:
    """How the general path reads a text cell of a categorical column (table.to_float, then
    category_key): (its number, None) for a finite number, (None, None) for a missing token,
    (None, its category key) for anything else."""
    stripped = text.strip()
    if stripped in MISSING_TOKENS:
        return None, None
    try:
        number = float(stripped)
    except ValueError:
        return None, stripped
    return (number, None) if math.isfinite(number) else (None, category_key(number))


def _as_number(category: str) -> float | None:
    """The number a category's canonical key stands for ('3' → 3.0), if it is a finite number."""
    try:
        number = float(category)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
