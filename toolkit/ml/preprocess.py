"""The fitted transform from table columns to the network's float32 features.

Mean imputation + standardization for numeric columns, one-hot for categorical ones, fitted on
training rows only and serialized into the model artifact, so `predict`, `evaluate` and the
server apply exactly the same transform. A missing categorical value becomes the training mode;
a category unseen in training encodes as all zeros.
"""

from __future__ import annotations

import numpy as np

from toolkit.errors import DataError
from toolkit.ml.data import Dataset
from toolkit.ml.table import Table, sort_keys


class Preprocessor:
    def __init__(self, numeric: list[dict], categorical: list[dict], columns: list[str]) -> None:
        self.numeric = numeric  # [{"name", "mean", "std"}]
        self.categorical = categorical  # [{"name", "categories", "fill"}]
        self.columns = columns  # raw input columns in order

    @classmethod
    def fit(cls, dataset: Dataset, rows: np.ndarray) -> Preprocessor:
        table = dataset.table
        numeric = []
        for name in dataset.numeric:
            values = table.numbers(name)[rows]
            observed = values[~np.isnan(values)]
            mean = float(observed.mean()) if len(observed) else 0.0
            std = float(np.where(np.isnan(values), mean, values).std()) if len(observed) else 0.0
            numeric.append({"name": name, "mean": mean, "std": std if std > 1e-12 else 1.0})
        categorical = []
        for name in dataset.categorical:
            codes, keys = table.column(name).categories()
            chosen = codes[rows]
            counts = np.bincount(chosen[chosen >= 0], minlength=len(keys))
            categories = sort_keys(k for k, count in zip(keys, counts, strict=True) if count)
            by_key = dict(zip(keys, counts.tolist(), strict=True))
            fill = max(categories, key=by_key.__getitem__) if categories else None  # the mode; ties: the first in order
            categorical.append({"name": name, "categories": categories, "fill": fill})
        return cls(numeric, categorical, dataset.features)

    @property
    def feature_names(self) -> list[str]:
        names = [n["name"] for n in self.numeric]
        for c in self.categorical:
            names += [f"{c['name']}={cat}" for cat in c["categories"]]
        return names

    def column_slices(self) -> dict[str, slice]:
        """Each raw column's feature columns (one for a number, its one-hot block for a category)."""
        slices = {spec["name"]: slice(j, j + 1) for j, spec in enumerate(self.numeric)}
        j = len(self.numeric)
        for spec in self.categorical:
            slices[spec["name"]] = slice(j, j + len(spec["categories"]))
            j += len(spec["categories"])
        return slices

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c["categories"]) for c in self.categorical)

    def transform_table(self, table: Table, rows: np.ndarray | None = None) -> np.ndarray:
        """(rows, features) float32, written column by column into one matrix."""
        missing = [c for c in self.columns if c not in table]
        if missing:
            raise DataError(f"{table.source}: missing feature column(s) {missing} the model was trained with.")
        n = len(table) if rows is None else len(rows)
        out = np.empty((n, self.width), dtype=np.float32)
        for j, spec in enumerate(self.numeric):
            try:
                values = table.numbers(spec["name"])
            except DataError as exc:
                raise DataError(f"{exc} The model takes a number (or null) for feature '{spec['name']}'.") from None
            values = values if rows is None else values[rows]
            infinite = np.flatnonzero(np.isinf(values))
            if len(infinite):
                raise DataError(f"{table.source}: feature '{spec['name']}' has a value too large to be a number "
                                f"({table.row_name(int(infinite[0]))}).")
            out[:, j] = (np.where(np.isnan(values), spec["mean"], values) - spec["mean"]) / spec["std"]
        j = len(self.numeric)
        for spec in self.categorical:
            width = len(spec["categories"])
            out[:, j:j + width] = 0.0
            codes, keys = table.column(spec["name"]).categories()
            codes = codes if rows is None else codes[rows]
            position = {category: i for i, category in enumerate(spec["categories"])}
            fill = position.get(spec["fill"], -1) if spec["fill"] is not None else -1
            lookup = np.array([position.get(k, -1) for k in keys] + [fill], dtype=np.int64)  # code -1 (missing) → fill
            columns = lookup[codes]
            hit = np.flatnonzero(columns >= 0)
            out[hit, j + columns[hit]] = 1.0
            j += width
        return out

    def transform_columns(self, columns: dict[str, list], source: str = "input") -> np.ndarray:
        """Records by column name (JSON, request bodies): numbers may be int, float or None (missing)."""
        return self.transform_table(Table.from_columns(columns, source))

    def to_dict(self) -> dict:
        return {"columns": self.columns, "numeric": self.numeric, "categorical": self.categorical}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessor:
        return cls(data["numeric"], data["categorical"], data["columns"])
