from __future__ import annotations

import numpy as np
import pytest

from conftest import HEART
from toolkit.errors import DataError
from toolkit.ml.data import prepare_dataset, stratified_kfold, stratified_split
from toolkit.ml.preprocess import Preprocessor
from toolkit.ml.table import category_key, parse_csv, read_csv


def test_heart_csv_loads_with_six_missing_cells():
    table = read_csv(HEART)
    assert len(table) == 303 and table.delimiter == ","
    assert sum(int((~table.column(c).present()).sum()) for c in table.columns) == 6
    dataset = prepare_dataset(table, "num", "num > 0", ["cp", "restecg", "slope", "thal"])
    assert dataset.classes == ["0", "1"]
    assert dataset.y.sum() == 139  # patients with num > 0
    assert "num" not in dataset.features and len(dataset.features) == 13


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_delimiter_detection(delimiter):
    text = delimiter.join(["a", "b", "label"]) + "\n" + "\n".join(delimiter.join(["1.5", "?", "x"]) for _ in range(3))
    table = parse_csv(text, "mem.csv")
    assert table.delimiter == delimiter
    assert [r["b"] for r in table.records()] == [None, None, None] and [r["a"] for r in table.records()] == [1.5] * 3


def test_ragged_row_is_reported_with_its_line():
    with pytest.raises(DataError, match=r"row 3 \(line 3\) has 2 fields but the header has 3"):
        parse_csv("a,b,c\n1,2,3\n1,2\n", "mem.csv")


def test_non_numeric_undeclared_column_is_a_clear_error():
    table = parse_csv("age,colour,y\n30,red,1\n40,blue,0\n", "mem.csv")
    with pytest.raises(DataError) as err:
        prepare_dataset(table, "y")
    message = str(err.value)
    assert "column 'colour' is not numeric (row 2 has 'red')" in message
    assert "training.categorical" in message
    assert prepare_dataset(table, "y", categorical=["colour"]).categorical == ["colour"]
    assert prepare_dataset(table, "y", drop_columns=["colour"]).features == ["age"]


def test_missing_label_column_lists_columns():
    table = parse_csv("a,b\n1,2\n3,4\n", "mem.csv")
    with pytest.raises(DataError, match="label column 'target' does not exist. Columns: a, b"):
        prepare_dataset(table, "target")


def test_one_class_dataset_is_refused():
    table = parse_csv("a,y\n1,1\n2,1\n3,1\n", "mem.csv")
    with pytest.raises(DataError, match="only one class"):
        prepare_dataset(table, "y")
    with pytest.raises(DataError, match=r"target 'y > 5'"):
        prepare_dataset(table, "y", "y > 5")


def test_rows_without_label_are_dropped_and_counted():
    dataset = prepare_dataset(parse_csv("a,y\n1,0\n2,?\n3,1\n", "mem.csv"), "y")
    assert dataset.dropped_rows == 1 and len(dataset.table) == 2


def test_stratified_split_keeps_class_balance_and_partitions():
    y = np.array([0] * 70 + [1] * 30)
    train, val, test = stratified_split(y, 0.2, 0.1, seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    assert (y[test] == 1).sum() == 3 and (y[val] == 1).sum() == 6
    assert np.array_equal(stratified_split(y, 0.2, 0.1, seed=3)[0], train)


def test_kfold_partitions_and_stratifies():
    y = np.array([0] * 50 + [1] * 25)
    folds = stratified_kfold(y, 5, seed=0)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held.tolist()) == list(range(75))
    for train, held_out in folds:
        assert not set(train) & set(held_out)
        assert (y[held_out] == 1).sum() == 5
    with pytest.raises(DataError, match="at least 30 rows of every class"):
        stratified_kfold(y, 30, seed=0)


def test_preprocessor_is_fitted_on_training_rows_only():
    table = parse_csv("x,c,y\n1,a,0\n3,b,1\n?,a,0\n100,z,1\n", "mem.csv")
    dataset = prepare_dataset(table, "y", categorical=["c"])
    pre = Preprocessor.fit(dataset, np.array([0, 1, 2]))
    assert pre.numeric[0]["mean"] == 2.0  # row 3 (100) is not training data; '?' is ignored
    assert pre.feature_names == ["x", "c=a", "c=b"]
    x = pre.transform_table(dataset.table)
    assert x.dtype == np.float32
    assert x[2, 0] == 0.0  # missing -> training mean -> standardized 0
    np.testing.assert_array_equal(x[3, 1:], [0, 0])  # unseen category 'z' -> all zeros
    restored = Preprocessor.from_dict(pre.to_dict())
    np.testing.assert_array_equal(restored.transform_table(dataset.table), x)


def test_category_keys_are_canonical():
    assert category_key("1.0") == category_key(1) == category_key("1") == "1"
    assert category_key(" red ") == "red" and category_key("?") is None and category_key(2.5) == "2.5"
