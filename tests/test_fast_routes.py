"""The serving fast path (toolkit/serve/fast_routes.py, toolkit/ml/row_encoder.py) against the
reference path it must agree with: for valid requests the same features and the same answer as
`Preprocessor.transform_table` / `score_records`; for anything it cannot vouch for, no answer
(the FastAPI route then names the problem)."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from toolkit.ml.artifacts import load_artifact
from toolkit.ml.predict import score_records
from toolkit.ml.row_encoder import RowEncoder
from toolkit.ml.table import Table, category_key
from toolkit.serve.fast_routes import PredictHandler
from toolkit.serve.metrics import ServerMetrics
from toolkit.serve.predictor import Predictor


@pytest.fixture(scope="module")
def model(model_dir):
    return load_artifact(model_dir)


def _value(rng: random.Random, name: str, model) -> object:
    categorical = {c["name"]: c["categories"] for c in model.preprocessor.categorical}
    roll = rng.random()
    if roll < 0.1:
        return None  # missing: the mean, or the training mode
    if name in categorical:
        if roll < 0.2:
            return rng.choice([99, 7.5, -1])  # a category unseen in training: all zeros
        category = rng.choice(categorical[name])
        return float(category) if roll < 0.5 else int(float(category))  # 3 and 3.0 are one category
    return rng.choice([rng.randint(-5, 400), rng.uniform(-1e3, 1e3), 0, 1e30])


def test_the_encoder_gives_the_reference_features_for_random_rows(model):
    rng = random.Random(19)
    encoder, columns = RowEncoder(model.preprocessor), model.preprocessor.columns
    for _ in range(300):
        rows = [tuple(_value(rng, name, model) for name in columns) for _ in range(rng.choice([1, 2, 7, 64]))]
        reference = model.preprocessor.transform_table(Table.from_columns(dict(zip(columns, map(list, zip(*rows, strict=True)), strict=True)), "t"))
        np.testing.assert_array_equal(encoder.encode(rows), reference)


def test_a_valid_body_gets_the_reference_answer(model):
    rng = random.Random(7)
    handler = PredictHandler(Predictor(model, ServerMetrics(model), None), 256)
    columns = model.preprocessor.columns
    for _ in range(100):
        records = [{name: _value(rng, name, model) for name in columns} for _ in range(rng.choice([1, 5, 64]))]
        body = {"records": records} if rng.random() < 0.5 else {"instances": [[r[c] for c in columns] for r in records]}
        status, content = handler(orjson.dumps(body))
        reference = score_records(model, {c: [r[c] for r in records] for c in columns}, "request").predictions
        assert status == 200
        expected = {"model_version": model.version, "predictions": reference}
        unseen = _unseen(model, records)
        if unseen:
            expected["unseen_categories"] = unseen
        assert orjson.loads(content) == expected


def _unseen(model, records: list[dict]) -> dict:
    """The categorical values of `records` the model has no category for, by feature, each once."""
    found: dict = {}
    for record in records:
        for spec in model.preprocessor.categorical:
            value = record[spec["name"]]
            if value is not None and category_key(value) not in spec["categories"] and value not in found.get(spec["name"], []):
                found.setdefault(spec["name"], []).append(value)
    return found


@pytest.mark.parametrize("rows", [1, 9])
def test_the_encoder_refuses_ints_beyond_float32_one_by_one_and_in_bulk(model, rows):
    """orjson reads such a number in a body as a float; the encoder's contract holds for ints all the same."""
    encoder, width = RowEncoder(model.preprocessor), len(model.preprocessor.columns)
    for value in (10 ** 39, -(10 ** 39), 10 ** 400):
        assert encoder.encode([(1,) * width] * (rows - 1) + [(value,) + (1,) * (width - 1)]) is None
    assert encoder.encode([(1,) * width] * rows) is not None


@pytest.mark.parametrize("change", [
    lambda r, c: r.update({c[0]: "12"}),  # a text: the reference path decides (and names it if it is wrong)
    lambda r, c: r.update({c[0]: True}),  # a bool is not a number there
    lambda r, c: r.update({c[0]: 1e39}),  # outside float32
    lambda r, c: r.pop(c[0]),  # a missing feature
    lambda r, c: r.update({"extra": 1}),  # an unknown one
    lambda r, c: r.update({c[0]: [1]}),  # not a value
], ids=["text", "bool", "float32-range", "missing", "unknown", "list"])
@pytest.mark.parametrize("rows", [1, 9], ids=["one-row", "checked-in-bulk"])  # RowEncoder checks up to FEW_ROWS one by one
def test_anything_the_fast_path_cannot_vouch_for_goes_to_the_reference_route(model, change, rows):
    handler = PredictHandler(Predictor(model, ServerMetrics(model), None), 16)
    columns = model.preprocessor.columns
    record = {name: 1 for name in columns}
    change(record, columns)
    body = {"records": [{name: 1 for name in columns}] * (rows - 1) + [record]}
    assert handler(orjson.dumps(body)) is None
    assert handler(b'{"records": [') is None  # not JSON
    assert handler(orjson.dumps({"records": [{name: 1 for name in columns}] * 17})) is None  # over the batch limit
    assert handler(orjson.dumps({"records": []})) is None
    assert handler(orjson.dumps({"records": [{name: 1 for name in columns}], "instances": []})) is None


def test_every_body_gets_the_same_status_and_answer_on_both_paths(model_dir, model):
    """A property over the whole float32 range (values that overflow once standardized included) and
    every categorical's edges and spellings (its first and last category, as numbers and as the
    strings /v1/model lists, padded, missing tokens, an unseen text, another script's digit): where
    the fast handler answers, its status and body are the FastAPI route's; and it answers most."""
    from fastapi.testclient import TestClient

    from toolkit.serve.app import create_app

    reference = TestClient(create_app(model_dir, max_batch_size=16).api)  # the FastAPI routes alone
    handler = PredictHandler(Predictor(model, ServerMetrics(model), None), 16)
    rng, top = random.Random(25), float(np.finfo(np.float32).max)
    numeric = {n["name"]: n for n in model.preprocessor.numeric}
    categories = {c["name"]: c["categories"] for c in model.preprocessor.categorical}
    assert categories, "the test needs a model with categorical features"

    def value(name: str) -> object:
        if rng.random() < 0.05:
            return None
        if name in categories:
            first, last = categories[name][0], categories[name][-1]
            spellings = [first, last, f" {last} ", "NA", "", "Río Bajo", "1e999", "\u0663", 99, -1, 7.5]
            spellings += [float(c) for c in (first, last) if c.lstrip("-").replace(".", "", 1).isdigit()]
            return rng.choice(spellings)
        spec = numeric[name]
        if rng.random() < 0.03:  # the edges: beyond what standardizing keeps finite, or just within it
            return rng.choice([rng.uniform(-top, top), top, -top, 0.999 * top, 3e38, spec["mean"] + 1e37 * spec["std"]])
        return rng.choice([rng.uniform(-1e3, 1e3), rng.randint(-5, 400), spec["mean"], 0])

    answered = 0
    for _ in range(400):
        records = [{name: value(name) for name in model.preprocessor.columns} for _ in range(rng.choice([1, 3, 9]))]
        body = orjson.dumps({"records": records})
        fast = handler(body)
        if fast is None:
            continue  # the FastAPI route answers it, whatever it is
        answered += 1
        expected = reference.post("/v1/predict", content=body, headers={"content-type": "application/json"})
        assert (fast[0], orjson.loads(fast[1])) == (expected.status_code, expected.json()), records
    assert answered > 100, answered
