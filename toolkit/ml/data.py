"""CSV → features and labels.

`read_csv` keeps raw cells ('?' and empty become missing). `prepare_dataset` checks the
columns against the training config and derives the target. `Preprocessor` is fitted on the
training split only (mean imputation, standardization, one-hot encoding) and serialized
into the model artifact, so serving applies exactly the same transform.
"""

from __future__ import annotations

import csv
import hashlib
import math
import operator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.config import parse_target
from toolkit.errors import DataError

MISSING_TOKENS = frozenset({"", "?", "NA", "N/A", "nan", "NaN", "null"})
CANDIDATE_DELIMITERS = ",;\t|"
_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


# ---------------------------------------------------------------- reading


@dataclass
class Table:
    """Raw CSV cells by column; None marks a missing cell."""

    columns: list[str]
    cells: dict[str, list[str | None]]
    source: str
    delimiter: str

    def __len__(self) -> int:
        return len(self.cells[self.columns[0]]) if self.columns else 0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_delimiter(sample: str) -> str:
    """The candidate delimiter that splits the header and first lines into equal, >1 fields."""
    lines = [line for line in sample.splitlines() if line.strip()][:20]
    if not lines:
        raise DataError("the file is empty")
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=CANDIDATE_DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in CANDIDATE_DELIMITERS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def read_csv(path: str | Path, delimiter: str | None = None) -> Table:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: dataset not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the dataset as UTF-8 text ({exc}).") from None
    return parse_csv(text, str(path), delimiter)


def parse_csv(text: str, path: str, delimiter: str | None = None) -> Table:
    """CSV text with a header row; `path` only names the source in errors."""
    try:
        delimiter = delimiter or detect_delimiter(text[:65536])
    except DataError as exc:
        raise DataError(f"{path}: {exc}.") from None
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in row)]
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header row and at least one data row, found {len(rows)} non-empty rows.")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise DataError(f"{path}: the header must name every column once, got {header}.")
    cells: dict[str, list[str | None]] = {h: [] for h in header}
    for line_no, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {line_no} has {len(row)} fields but the header has {len(header)} "
                f"(delimiter {delimiter!r})."
            )
        for name, cell in zip(header, row, strict=True):
            cell = cell.strip()
            cells[name].append(None if cell in MISSING_TOKENS else cell)
    return Table(header, cells, path, delimiter)


# ---------------------------------------------------------------- values


def to_float(value: object) -> float | None:
    """A number from a CSV cell or JSON value; None for missing; ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("booleans are not numbers")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if text in MISSING_TOKENS:
        return None
    return float(text)


def category_key(value: object) -> str | None:
    """Canonical form of a categorical value, so 1, 1.0, '1' and '1.0' are one category."""
    if value is None:
        return None
    text = str(value).strip()
    if text in MISSING_TOKENS:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number == int(number):
        return str(int(number))
    return repr(number)


def _sort_classes(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


# ---------------------------------------------------------------- dataset


@dataclass
class Dataset:
    """Checked feature columns and encoded labels of one CSV."""

    table: Table
    numeric: list[str]
    categorical: list[str]
    y: np.ndarray  # class indices
    classes: list[str]
    label: str
    target: str | None
    dropped_rows: int  # rows without a label

    @property
    def features(self) -> list[str]:
        return [c for c in self.table.columns if c in self.numeric or c in self.categorical]


def prepare_dataset(
    table: Table,
    label: str,
    target: str | None = None,
    categorical: list[str] | tuple[str, ...] = (),
    drop_columns: list[str] | tuple[str, ...] = (),
) -> Dataset:
    """Check columns against the training settings; derive the target, e.g. 'num > 0'."""
    src = table.source
    target_rule = parse_target(target) if target else None
    if target and (target_rule is None or target_rule[0] != label):
        raise DataError(f"target '{target}' must look like '{label} > 0' (label, operator, number).")
    if label not in table.columns:
        raise DataError(f"{src}: label column '{label}' does not exist. Columns: {', '.join(table.columns)}.")
    for kind, names in (("categorical", categorical), ("drop", drop_columns)):
        unknown = [c for c in names if c not in table.columns]
        if unknown:
            raise DataError(f"{src}: {kind} column(s) {unknown} do not exist. Columns: {', '.join(table.columns)}.")
    raw_labels = table.cells[label]
    keep = np.array([v is not None for v in raw_labels])
    table = _subset(table, np.flatnonzero(keep)) if not keep.all() else table
    labels = table.cells[label]
    if target_rule is not None:
        _, op, threshold = target_rule
        try:
            values = [to_float(v) for v in labels]
        except ValueError:
            bad = next(v for v in labels if _not_number(v))
            raise DataError(f"{src}: target '{target}' needs a numeric label column, but '{label}' has {bad!r}.") from None
        y = np.array([_OPERATORS[op](v, threshold) for v in values], dtype=np.int64)
        classes = ["0", "1"]
    else:
        keys = [category_key(v) for v in labels]
        classes = _sort_classes(set(keys))
        index = {c: i for i, c in enumerate(classes)}
        y = np.array([index[k] for k in keys], dtype=np.int64)
    present = np.unique(y)
    if len(present) < 2:
        only = classes[present[0]] if len(present) else "none"
        rule = f" (target '{target}')" if target else ""
        raise DataError(
            f"{src}: the label '{label}'{rule} has only one class ({only!r}) in {len(y)} rows; "
            "a classifier needs at least two."
        )
    categorical = [c for c in table.columns if c in set(categorical)]
    numeric = [c for c in table.columns if c not in set(categorical) | set(drop_columns) | {label}]
    for column in numeric:
        cells = table.cells[column]
        bad = next(((i, v) for i, v in enumerate(cells) if _not_number(v)), None)
        if bad is not None:
            raise DataError(
                f"{src}: column '{column}' is not numeric (row {bad[0] + 2} has {bad[1]!r}). Declare it in "
                "training.categorical to one-hot encode it, or list it in training.drop_columns (--drop) to ignore it."
            )
    if not numeric and not categorical:
        raise DataError(f"{src}: no feature columns left after removing the label and dropped columns.")
    return Dataset(table, numeric, categorical, y, classes, label, target, int((~keep).sum()))


def _not_number(value: str | None) -> bool:
    try:
        to_float(value)
        return False
    except ValueError:
        return True


def _subset(table: Table, rows: np.ndarray) -> Table:
    cells = {c: [v[i] for i in rows] for c, v in table.cells.items()}
    return Table(table.columns, cells, table.source, table.delimiter)


# ---------------------------------------------------------------- splits


def stratified_split(
    y: np.ndarray, validation_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation/test row indices with each class in the same proportion."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(len(members) * test_fraction))
        n_val = int(round(len(members) * validation_fraction))
        test.append(members[:n_test])
        val.append(members[n_test : n_test + n_val])
        train.append(members[n_test + n_val :])
    return tuple(np.sort(np.concatenate(part)) for part in (train, val, test))  # type: ignore[return-value]


def stratified_kfold(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, held-out) row indices for each of k folds, classes balanced across folds."""
    if k < 2:
        raise DataError(f"cross-validation needs at least 2 folds, got {k}.")
    counts = np.bincount(y)
    if counts[counts > 0].min() < k:
        raise DataError(f"{k}-fold cross-validation needs at least {k} rows of every class; counts are {counts.tolist()}.")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        fold_of[members] = (np.arange(len(members)) + rng.integers(k)) % k
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(k)]


# ---------------------------------------------------------------- preprocessing


class Preprocessor:
    """Mean imputation + standardization for numeric columns, one-hot for categorical ones.

    Fitted on training rows only. A missing categorical value becomes the training mode;
    a category unseen in training encodes as all zeros.
    """

    def __init__(self, numeric: list[dict], categorical: list[dict], columns: list[str]) -> None:
        self.numeric = numeric  # [{"name", "mean", "std"}]
        self.categorical = categorical  # [{"name", "categories", "fill"}]
        self.columns = columns  # raw input columns in order

    @classmethod
    def fit(cls, dataset: Dataset, rows: np.ndarray) -> Preprocessor:
        numeric = []
        for name in dataset.numeric:
            values = _numeric_column(dataset.table.cells[name])[rows]
            observed = values[~np.isnan(values)]
            mean = float(observed.mean()) if len(observed) else 0.0
            std = float(np.where(np.isnan(values), mean, values).std()) if len(observed) else 0.0
            numeric.append({"name": name, "mean": mean, "std": std if std > 1e-12 else 1.0})
        categorical = []
        for name in dataset.categorical:
            keys = [category_key(dataset.table.cells[name][i]) for i in rows]
            seen = [k for k in keys if k is not None]
            categories = _sort_classes(set(seen)) if seen else []
            fill = max(categories, key=seen.count) if seen else None
            categorical.append({"name": name, "categories": categories, "fill": fill})
        return cls(numeric, categorical, dataset.features)

    @property
    def feature_names(self) -> list[str]:
        names = [n["name"] for n in self.numeric]
        for c in self.categorical:
            names += [f"{c['name']}={cat}" for cat in c["categories"]]
        return names

    def transform_table(self, table: Table, rows: np.ndarray | None = None) -> np.ndarray:
        missing = [c for c in self.columns if c not in table.cells]
        if missing:
            raise DataError(f"{table.source}: missing feature column(s) {missing} the model was trained with.")
        rows = np.arange(len(table)) if rows is None else rows
        columns = {c: [table.cells[c][i] for i in rows] for c in self.columns}
        return self.transform_columns(columns, len(rows), source=table.source)

    def transform_columns(self, columns: dict[str, list], n: int, source: str = "input") -> np.ndarray:
        """Encode raw values by column name; numbers may be str, int, float or None (missing)."""
        blocks = []
        for spec in self.numeric:
            try:
                values = _numeric_column(columns[spec["name"]])
            except ValueError as exc:
                raise DataError(f"{source}: feature '{spec['name']}' {exc}.") from None
            values = np.where(np.isnan(values), spec["mean"], values)
            blocks.append(((values - spec["mean"]) / spec["std"])[:, None])
        for spec in self.categorical:
            index = {cat: i for i, cat in enumerate(spec["categories"])}
            onehot = np.zeros((n, len(index)))
            for row, value in enumerate(columns[spec["name"]]):
                key = category_key(value)
                position = index.get(spec["fill"] if key is None else key)
                if position is not None:
                    onehot[row, position] = 1.0
            blocks.append(onehot)
        matrix = np.hstack(blocks) if blocks else np.zeros((n, 0))
        return matrix.astype(np.float32)

    def to_dict(self) -> dict:
        return {"columns": self.columns, "numeric": self.numeric, "categorical": self.categorical}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessor:
        return cls(data["numeric"], data["categorical"], data["columns"])


def _numeric_column(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        try:
            number = to_float(value)
        except ValueError:
            raise ValueError(f"has non-numeric value {value!r} in row {i + 1}") from None
        if number is not None and not math.isfinite(number):
            raise ValueError(f"has non-finite value {value!r} in row {i + 1}")
        out[i] = np.nan if number is None else number
    return out
