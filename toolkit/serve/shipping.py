"""The prediction log and the ground truth, shipped to the artifact store without ever slowing a request.

Records arrive as encoded chunks (one line of a batch of requests from prediction_log.py; one
request's labels from /v1/feedback) and are offered to an in-memory queue bounded in records
(`offer`, never blocking): beyond the bound they are dropped and counted. A background task takes
batches (up to `batch_size` records, or what arrived within `flush_seconds`) and writes each as one
gzipped JSON-lines object, one line per chunk (the format: log_format.py),
`s3://<bucket>/<kind>/<env>/<date>/<time>-<id>.jsonl.gz`, in a worker thread. When S3 is
slow or down the batch is retried with backoff while new records queue up (and beyond the queue,
are dropped and counted); shipping resumes by itself when S3 is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import logging
import uuid
from typing import Callable

log = logging.getLogger("toolkit.serve")
POLL_SECONDS = 0.25  # how often a waiting shipper looks whether the server is stopping


class Shipper:
    """Chunks (encoded JSON lines: a batch of requests' predictions, or one request's labels) queued and
    shipped together. The queue is bounded in records, not chunks."""

    def __init__(self, kind: str, prefix: str, put: Callable[[str, bytes], None], metrics, queue_size: int, batch_size: int,
                 flush_seconds: float) -> None:
        self.kind, self.prefix, self.put, self.metrics = str(kind), prefix, put, metrics  # prefix: store/layout.py
        self.queue_size, self.batch_size, self.flush_seconds = queue_size, batch_size, flush_seconds
        self.queue: asyncio.Queue = asyncio.Queue()  # of (records, chunk)
        self.queued = 0  # records in the queue
        self._task: asyncio.Task | None = None
        self._batch: list = []  # taken from the queue, not yet shipped
        self._arrived = asyncio.Event()
        self._queue_gauge = metrics.log_queue.labels(kind)  # labels() once: offer runs for every batch and every feedback request

    def offer(self, chunk: bytes, records: int) -> None:
        if self.queued + records > self.queue_size:
            self.metrics.log_records.labels(self.kind, "dropped").inc(records)
            return
        self.queue.put_nowait((records, chunk))
        self.queued += records
        self._arrived.set()
        self._queue_gauge.set(self.queued)

    def _took(self, item: tuple[int, object], batch: list) -> int:
        batch.append(item)
        self.queued -= item[0]
        return item[0]

    def start(self) -> None:
        self._closing = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout: float = 5.0) -> None:
        """Ship what is queued and the batch being gathered (within `timeout`), then stop."""
        if self._task is None:
            return
        self._closing.set()
        self._arrived.set()
        try:
            await asyncio.wait_for(self._task, timeout)
        except Exception as exc:  # shutting down: what cannot be shipped now is lost, and said so
            log.warning("%d %s records not shipped at shutdown: %r", self.queued + sum(n for n, _ in self._batch), self.kind, exc)

    async def _gather(self) -> list:
        """The next batch: chunks up to `batch_size` records, or what arrived within `flush_seconds` of
        the first; when closing, whatever is left in the queue ([] when it is empty)."""
        loop = asyncio.get_running_loop()
        batch: list = []
        self._batch = batch
        records, deadline = 0, None
        while records < self.batch_size:
            if self._closing.is_set():
                while records < self.batch_size and not self.queue.empty():
                    records += self._took(self.queue.get_nowait(), batch)
                break
            wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - loop.time())
            if wait <= 0:
                break
            if self.queue.empty():
                # waiting on an event, not on queue.get(): a timed-out get can lose the item it was handed
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), wait)
                except asyncio.TimeoutError:
                    continue
                continue
            records += self._took(self.queue.get_nowait(), batch)
            deadline = deadline or loop.time() + self.flush_seconds
        return batch

    async def _run(self) -> None:
        delay = 1.0
        while True:
            batch = await self._gather()
            if not batch:
                return  # closing and nothing left
            self._queue_gauge.set(self.queued)
            while True:
                try:
                    await asyncio.to_thread(self._ship, batch)
                    self._batch = []
                    delay = 1.0
                    break
                except Exception as exc:  # any failure of the store (down, slow, denied): keep the batch, back off, retry
                    self.metrics.log_errors.labels(self.kind).inc()
                    log.warning("shipping %d %s records failed (%s); retrying in %.0f s", sum(n for n, _ in batch), self.kind, exc, delay)
                    if self._closing.is_set():
                        raise  # no retries at shutdown: stop() reports what is lost
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)

    def _ship(self, batch: list) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        key = f"{self.prefix}{now:%Y-%m-%d}/{now:%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl.gz"
        lines = b"".join(chunk for _, chunk in batch)
        # level 1: the thread shares the server's CPU; a tenth bigger than level 6, a third of the time
        self.put(key, gzip.compress(lines, compresslevel=1, mtime=0))
        self.metrics.log_records.labels(self.kind, "shipped").inc(sum(n for n, _ in batch))
