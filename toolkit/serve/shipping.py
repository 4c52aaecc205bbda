"""The prediction log and the ground truth, shipped to the artifact store without ever slowing a request.

The request path only offers a record to a bounded in-memory queue (`offer`, never blocking): when
the queue is full the record is dropped and counted. A background task takes batches (up to
`batch_size`, or what arrived within `flush_seconds`) and writes each as one gzipped JSON-lines
object, `s3://<bucket>/<kind>/<env>/<date>/<time>-<id>.jsonl.gz`, in a worker thread. When S3 is
slow or down the batch is retried with backoff while new records queue up (and beyond the queue,
are dropped and counted); shipping resumes by itself when S3 is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import logging
import uuid
from typing import Callable

log = logging.getLogger("toolkit.serve")
POLL_SECONDS = 0.25  # how often a waiting shipper looks whether the server is stopping


def s3_put(bucket: str) -> Callable[[str, bytes], None]:
    """A PutObject for `bucket` with short timeouts and no client retries (the shipper retries);
    AWS_ENDPOINT_URL (the local moto) and credentials come from the environment, as boto3 reads them."""
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}))

    def put(key: str, body: bytes) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/x-ndjson", ContentEncoding="gzip")

    return put


class Shipper:
    def __init__(self, kind: str, env: str, put: Callable[[str, bytes], None], metrics, queue_size: int, batch_size: int,
                 flush_seconds: float) -> None:
        self.kind, self.env, self.put, self.metrics = kind, env, put, metrics
        self.batch_size, self.flush_seconds = batch_size, flush_seconds
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task | None = None
        self._batch: list[dict] = []  # taken from the queue, not yet shipped

    def offer(self, record: dict) -> None:
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.metrics.log_records.labels(self.kind, "dropped").inc()
        self.metrics.log_queue.labels(self.kind).set(self.queue.qsize())

    def start(self) -> None:
        self._closing = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, timeout: float = 5.0) -> None:
        """Ship what is queued and the batch being gathered (within `timeout`), then stop."""
        if self._task is None:
            return
        self._closing.set()
        try:
            await asyncio.wait_for(self._task, timeout)
        except Exception as exc:  # shutting down: what cannot be shipped now is lost, and said so
            log.warning("%d %s records not shipped at shutdown: %r", self.queue.qsize() + len(self._batch), self.kind, exc)

    async def _gather(self) -> list[dict]:
        """The next batch: up to `batch_size` records, or what arrived within `flush_seconds` of the first;
        when closing, whatever is left in the queue ([] when it is empty)."""
        loop = asyncio.get_running_loop()
        batch: list[dict] = []
        self._batch = batch
        deadline = None
        while len(batch) < self.batch_size:
            if self._closing.is_set():
                while len(batch) < self.batch_size and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                break
            wait = POLL_SECONDS if deadline is None else min(POLL_SECONDS, deadline - loop.time())
            if wait <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), wait))
            except asyncio.TimeoutError:
                continue
            deadline = deadline or loop.time() + self.flush_seconds
        return batch

    async def _run(self) -> None:
        delay = 1.0
        while True:
            batch = await self._gather()
            if not batch:
                return  # closing and nothing left
            self.metrics.log_queue.labels(self.kind).set(self.queue.qsize())
            while True:
                try:
                    await asyncio.to_thread(self._ship, batch)
                    self._batch = []
                    delay = 1.0
                    break
                except Exception as exc:  # any failure of the store (down, slow, denied): keep the batch, back off, retry
                    self.metrics.log_errors.labels(self.kind).inc()
                    log.warning("shipping %d %s records failed (%s); retrying in %.0f s", len(batch), self.kind, exc, delay)
                    if self._closing.is_set():
                        raise  # no retries at shutdown: stop() reports what is lost
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 30.0)

    def _ship(self, batch: list[dict]) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        key = f"{self.kind}/{self.env}/{now:%Y-%m-%d}/{now:%H%M%S}-{uuid.uuid4().hex[:12]}.jsonl.gz"
        body = gzip.compress("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in batch).encode(), mtime=0)
        self.put(key, body)
        self.metrics.log_records.labels(self.kind, "shipped").inc(len(batch))
