"""The request path's side of the prediction log: a request appends what it already holds (its
time, prediction ids, rows, class probabilities and predicted classes) to a list, and the list becomes one JSON line, offered to
the shipper, once it holds `LINE_RECORDS` records or `ENCODE_SECONDS` after its first request.

A line per request cost each request ~5 µs (building and encoding a dict, a queue put); a line per
batch costs a request one append, and the batch's encoding is cheaper per record (bench/serve_throughput.py). The
pending list never holds more than about `LINE_RECORDS` records of request objects, and it is
encoded on the event loop, in pieces of a few hundred microseconds, not in a thread that would
hold the GIL against requests.
"""

from __future__ import annotations

import asyncio
import random
import time

import orjson

from toolkit.ml.predict import Scored
from toolkit.serve.log_format import prediction_line
from toolkit.serve.shipping import Shipper

LINE_RECORDS = 1024
ENCODE_SECONDS = 0.05


class PredictionLog:
    def __init__(self, shipper: Shipper, model_version: str, classes: list[str], features: list[str], sample_rate: float) -> None:
        self.shipper, self.model_version, self.classes, self.features = shipper, model_version, classes, features
        self.sample_rate = sample_rate
        self.line_records = min(LINE_RECORDS, shipper.batch_size)  # a line never outgrows a shipped object
        self.pending: list[tuple] = []  # (time, ids, rows, probabilities, predicted) per request
        self.pending_records = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, ids: list[str], rows: list, scored: Scored) -> None:
        """Log a sample of a request's predictions: `rows` are its values in `features` order."""
        probabilities, predicted = scored.probabilities, scored.predicted
        if self.sample_rate < 1.0:
            sampled = [i for i in range(len(ids)) if random.random() < self.sample_rate]
            if not sampled:
                return
            ids, rows = [ids[i] for i in sampled], [rows[i] for i in sampled]
            probabilities, predicted = probabilities[sampled], None if predicted is None else predicted[sampled]
        self.pending.append((time.time(), ids, rows, probabilities, predicted))
        self.pending_records += len(ids)
        if self.pending_records >= self.line_records:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(ENCODE_SECONDS, self.flush)

    def flush(self) -> None:
        """Encode what is pending as one line and offer it to the shipper."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.pending:
            return
        line = prediction_line(self.model_version, self.classes, self.features, self.pending)
        self.shipper.offer(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE), self.pending_records)
        self.pending, self.pending_records = [], 0
