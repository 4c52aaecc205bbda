"""The prediction log's batching (serve/prediction_log.py) and its format (serve/log_format.py):
requests become one line per batch, offered when the batch is full or after ENCODE_SECONDS, and
read back record by record with each record's own time; lines written before batching still read."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import orjson

from toolkit.ml.predict import Scored
from toolkit.serve import prediction_log
from toolkit.serve.log_format import records
from toolkit.serve.prediction_log import PredictionLog

CLASSES, FEATURES = ["0", "1"], ["age", "cp"]


class Offered:
    """The shipper's side: what was offered, and its batch size (which bounds a line)."""

    def __init__(self, batch_size: int = 10_000) -> None:
        self.batch_size, self.lines = batch_size, []

    def offer(self, chunk: bytes, records: int) -> None:
        self.lines.append((orjson.loads(chunk), records))


def request(n: int, start: int) -> tuple[list[str], list[tuple], Scored]:
    ids = [f"id{start + i}" for i in range(n)]
    rows = [(40 + start + i, None if i % 2 else 3) for i in range(n)]
    predicted = np.array([i % 2 for i in range(n)])
    probabilities = np.array([[0.25, 0.75] if i % 2 else [0.5 + i / 1000, 0.5 - i / 1000] for i in range(n)])
    predictions = [{"label": CLASSES[c], "probabilities": dict(zip(CLASSES, p, strict=True)), "prediction_id": ids[i]}
                   for i, (c, p) in enumerate(zip(predicted.tolist(), probabilities.tolist(), strict=True))]
    return ids, rows, Scored(predictions, np.zeros((n, 3), np.float32), predicted, probabilities)


def test_requests_become_one_line_offered_after_the_encode_delay_with_each_records_time():
    shipper = Offered()

    async def scenario():
        log = PredictionLog(shipper, "v1", CLASSES, FEATURES, sample_rate=1.0)
        log.add(*request(2, 0))
        await asyncio.sleep(0.01)
        log.add(*request(3, 2))
        assert shipper.lines == []  # not before the delay
        await asyncio.sleep(prediction_log.ENCODE_SECONDS + 0.05)

    asyncio.run(scenario())
    [(line, count)] = shipper.lines
    assert count == 5 and line["v"] == 2
    got = records(line)
    assert [r["prediction_id"] for r in got] == [f"id{i}" for i in range(5)]
    assert [r["features"] for r in got] == [{"age": 40, "cp": 3}, {"age": 41, "cp": None}, {"age": 42, "cp": 3},
                                            {"age": 43, "cp": None}, {"age": 44, "cp": 3}]
    assert [r["label"] for r in got] == ["0", "1", "0", "1", "0"]
    assert [r["probabilities"] for r in got] == [{"0": 0.5, "1": 0.5}, {"0": 0.25, "1": 0.75}, {"0": 0.5, "1": 0.5},
                                                 {"0": 0.25, "1": 0.75}, {"0": 0.502, "1": 0.498}]
    assert got[0]["time"] == got[1]["time"] < got[2]["time"] == got[4]["time"]  # each request's own time
    assert {r["model_version"] for r in got} == {"v1"}


def test_a_full_batch_is_offered_at_once_and_never_outgrows_the_shipped_object():
    shipper = Offered(batch_size=8)

    async def scenario():
        log = PredictionLog(shipper, "v1", CLASSES, FEATURES, sample_rate=1.0)
        log.add(*request(5, 0))
        log.add(*request(5, 5))  # 10 >= 8: offered now, without waiting
        assert [count for _, count in shipper.lines] == [10]
        log.add(*request(1, 10))
        log.flush()  # what stop() does
        assert [count for _, count in shipper.lines] == [10, 1]

    asyncio.run(scenario())


def test_sampling_keeps_a_share_of_the_records_and_their_rows_match():
    random.seed(7)
    shipper = Offered()

    async def scenario():
        log = PredictionLog(shipper, "v1", CLASSES, FEATURES, sample_rate=0.25)
        for start in range(0, 400, 4):
            log.add(*request(4, start))
        log.flush()

    asyncio.run(scenario())
    got = [r for line, _ in shipper.lines for r in records(line)]
    assert 60 < len(got) < 140, len(got)
    for r in got:
        number = int(r["prediction_id"][2:])
        assert r["features"]["age"] == 40 + number  # each kept id with its own row and answer
        assert r["label"] == CLASSES[(number % 4) % 2]


def test_lines_written_before_batching_still_read():
    v1 = {"v": 1, "time": 12.5, "model_version": "old", "prediction_ids": ["a", "b"], "features": {"age": [1, 2]},
          "labels": ["0", "1"], "probabilities": {"0": [0.9, 0.2], "1": [0.1, 0.8]}}
    assert records(v1) == [
        {"prediction_id": "a", "time": 12.5, "model_version": "old", "label": "0", "features": {"age": 1},
         "probabilities": {"0": 0.9, "1": 0.1}},
        {"prediction_id": "b", "time": 12.5, "model_version": "old", "label": "1", "features": {"age": 2},
         "probabilities": {"0": 0.2, "1": 0.8}}]
