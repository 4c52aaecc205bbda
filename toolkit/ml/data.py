"""A table → a dataset: features checked against the training settings, labels encoded, splits.

`prepare_dataset` checks the columns against the training config and derives the target;
`stratified_split` and `stratified_kfold` give row indices with each class in proportion.
Reading lives in `toolkit.ml.table`, the fitted transform in `toolkit.ml.preprocess`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np

from toolkit.config import parse_target
from toolkit.errors import DataError
from toolkit.ml.table import Table, sort_keys

_OPERATORS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}


@dataclass
class Dataset:
    """Checked feature columns and encoded labels of one table."""

    table: Table
    numeric: list[str]
    categorical: list[str]
    y: np.ndarray  # class indices; for regression the label's values (float64)
    classes: list[str]  # empty for regression
    label: str
    target: str | None
    dropped_rows: int  # rows without a label
    warnings: list[str] = field(default_factory=list)  # what was dropped or assumed, for the user to see
    task: str = "classification"  # or "regression"

    @property
    def features(self) -> list[str]:
        return [c for c in self.table.columns if c in self.numeric or c in self.categorical]

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    @property
    def strata(self) -> np.ndarray:
        """What splits keep in proportion: the classes; for regression nothing (one stratum: a random split)."""
        return np.zeros(len(self.y), dtype=np.int64) if self.regression else self.y


def prepare_dataset(
    table: Table,
    label: str,
    target: str | None = None,
    categorical: list[str] | tuple[str, ...] = (),
    drop_columns: list[str] | tuple[str, ...] = (),
    max_categories: int = 1000,
    task: str = "auto",
) -> Dataset:
    """Check columns against the training settings; derive the target, e.g. 'num > 0'. A categorical
    column with more than `max_categories` distinct values is refused (one-hot would need a column each).
    `task`: "regression" takes the label's numbers as they are; "classification" its values as
    classes, refusing a label that looks continuous; "auto" decides by that look.

    A feature column without a single value carries nothing to learn from: it is dropped, with
    a warning in `Dataset.warnings`."""
    src = table.source
    target_rule = parse_target(target) if target else None
    if target and (target_rule is None or target_rule[0] != label):
        raise DataError(f"target '{target}' must look like '{label} > 0' (label, operator, number).")
    if label not in table:
        raise DataError(f"{src}: label column '{label}' does not exist. Columns: {', '.join(table.columns)}.")
    if label in drop_columns:
        raise DataError(f"{src}: the label column '{label}' is also listed to drop (--drop / training.drop_columns); "
                        "a label cannot be dropped: remove it from the dropped columns, or choose another --label.")
    for kind, names in (("categorical", categorical), ("drop", drop_columns)):
        unknown = [c for c in names if c not in table]
        if unknown:
            raise DataError(f"{src}: {kind} column(s) {unknown} do not exist. Columns: {', '.join(table.columns)}.")
    categorical = [c for c in table.columns if c in set(categorical)]
    numeric = [c for c in table.columns if c not in set(categorical) | set(drop_columns) | {label}]
    for column in numeric:
        try:
            values = table.numbers(column)
        except DataError as exc:
            raise DataError(f"{exc} Declare it in training.categorical to one-hot encode it, or list it in "
                            "training.drop_columns (--drop) to ignore it.") from None
        infinite = np.flatnonzero(np.isinf(values))
        if len(infinite):
            raise DataError(f"{src}: column '{column}' has a value too large to be a number ({table.row_name(int(infinite[0]))}).")
    for column in categorical:
        distinct = len(table.column(column).categories()[1])
        if distinct > max_categories:
            raise DataError(f"{src}: categorical column '{column}' has {distinct} distinct values, over training.max_categories "
                            f"({max_categories}); an id-like column: drop it (--drop {column}); else raise the limit.")
    keep = table.column(label).present()
    dropped = int((~keep).sum())
    if dropped:
        table = table.take(np.flatnonzero(keep))
    if task == "regression" and target_rule is None:
        return _regression_dataset(table, label, numeric, categorical, dropped, src)
    y, classes = _labels(table, label, target, target_rule)
    if target_rule is None and looks_continuous(table, label, len(classes)):
        if task == "auto":
            return _regression_dataset(table, label, numeric, categorical, dropped, src)
        raise DataError(f"{src}: the label '{label}' looks continuous ({len(classes)} distinct numeric values in {len(y)} rows), "
                        "and a classification loss or task was asked for; train a regressor (--task regression, or "
                        f"--loss auto), or derive classes from it with --target '{label} > <threshold>'.")
    present = np.unique(y)
    if len(present) < 2:
        only = classes[present[0]] if len(present) else "none"
        rule = f" (target '{target}')" if target else ""
        raise DataError(
            f"{src}: the label '{label}'{rule} has only one class ({only!r}) in {len(y)} rows; "
            "a classifier needs at least two."
        )
    numeric, categorical, warnings = _usable_features(table, numeric, categorical, label, dropped, src)
    return Dataset(table, numeric, categorical, y, classes, label, target, dropped, warnings)


def _usable_features(table: Table, numeric: list[str], categorical: list[str], label: str, dropped: int,
                     src: str) -> tuple[list[str], list[str], list[str]]:
    """The feature columns without those that hold no value at all, and the warnings to give."""
    warnings = []
    if dropped:
        warnings.append(f"{src}: {dropped} row(s) without a value in the label column '{label}' were left out.")
    empty = [c for c in numeric + categorical if not table.column(c).present().any()]
    for name in empty:
        warnings.append(f"{src}: column '{name}' has no value in any row; it is left out of the features.")
    numeric = [c for c in numeric if c not in empty]
    categorical = [c for c in categorical if c not in empty]
    if not numeric and not categorical:
        raise DataError(f"{src}: no feature columns left after removing the label, dropped and empty columns.")
    return numeric, categorical, warnings


def _regression_dataset(table: Table, label: str, numeric: list[str], categorical: list[str], dropped: int, src: str) -> Dataset:
    column = table.column(label)
    if not column.numeric:
        raise DataError(f"{src}: regression needs a numeric label, but '{label}' has {column.first_text[1]!r} "
                        f"({table.row_name(column.first_text[0])}).")
    y = column.numbers.astype(np.float64)
    if np.isinf(y).any():
        raise DataError(f"{src}: the label '{label}' has a value too large to be a number ({table.row_name(int(np.flatnonzero(np.isinf(y))[0]))}).")
    if len(y) < 2 or float(np.std(y)) == 0.0:
        raise DataError(f"{src}: the label '{label}' has a single value in {len(y)} rows; there is nothing to predict.")
    numeric, categorical, warnings = _usable_features(table, numeric, categorical, label, dropped, src)
    return Dataset(table, numeric, categorical, y, [], label, None, dropped, warnings, task="regression")


def looks_continuous(table: Table, label: str, distinct: int) -> bool:
    """A numeric label with many distinct values is a quantity to predict, not a set of classes:
    more than 20 distinct values and more than one per 20 rows, or fractional values with more
    than 10 (scikit-learn's type_of_target calls any fractional label continuous)."""
    column = table.column(label)
    if not column.numeric:
        return False
    values = column.numbers[~np.isnan(column.numbers)]
    fractional = bool(np.any(values != np.round(values)))
    return (distinct > 20 and distinct * 20 > len(values)) or (fractional and distinct > 10)


def _labels(table: Table, label: str, target: str | None, target_rule) -> tuple[np.ndarray, list[str]]:
    if target_rule is not None:
        column = table.column(label)
        if not column.numeric:
            raise DataError(f"{table.source}: target '{target}' needs a numeric label column, but '{label}' has "
                            f"{column.first_text[1]!r}.")
        _, op, threshold = target_rule
        return _OPERATORS[op](column.numbers, threshold).astype(np.int64), ["0", "1"]
    codes, keys = table.column(label).categories()
    classes = sort_keys(keys)
    order = np.array([classes.index(k) for k in keys], dtype=np.int64)
    return order[codes], classes


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
