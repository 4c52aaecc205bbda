"""/v1/predict and /v1/feedback without the framework on the common path.

FastAPI's routing, request objects, exception middleware and pydantic cost more than the model
(profiled with bench/serve_throughput.py, README "Benchmarks"). `FastRoutes` sits under `MeasureAndLimit` (request ids, limits, metrics
stay on for every request) and in front of the FastAPI app: for a route it knows, it reads the
body and asks the route's handler, which answers the plainly valid request itself (orjson, a
shape check, `RowEncoder`, the forward pass, orjson) and returns None for anything else. Then
the request, body and all, is replayed to the FastAPI route, which validates with pydantic and
answers exactly as before: every 4xx names its field. The FastAPI routes stay the documented
ones (OpenAPI) and the reference behaviour the fast handlers are tested against.

Under `toolkit serve`, the same handlers usually answer earlier still, in the HTTP protocol
(`DirectRoutes`, serve/protocol.py); `FastRoutes` answers the requests that take the ASGI path
(pipelined behind a slow one, chunked, HTTP/1.0, ...) and those of in-process test clients.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import orjson

from toolkit.ml.predict import outputs, scored
from toolkit.ml.row_encoder import RowEncoder
from toolkit.serve.middleware import MeasureAndLimit
from toolkit.serve.predictor import Predictor

Answer = tuple[int, bytes] | None  # (status, JSON body), or None: let the FastAPI route answer
Headers = list[tuple[bytes, bytes]]  # the request's, names in lower case (as uvicorn gives them)
FAULTS_APPLIED = "toolkit.faults_applied"  # scope key: the fast route applied the test fault switch already
DECLINED = "toolkit.fast_declined"  # scope key: the protocol's direct answer (serve/protocol.py) declined the request already


class FastRoutes:
    def __init__(self, app, handlers: dict[tuple[str, str], Callable[[bytes, Headers], Answer]], faults=None) -> None:
        self.app, self.handlers, self.faults = app, handlers, faults

    async def __call__(self, scope, receive, send) -> None:
        handler = self.handlers.get((scope.get("method"), scope.get("path"))) \
            if scope["type"] == "http" and DECLINED not in scope else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        if self.faults is not None:
            await self.faults.apply()
            scope[FAULTS_APPLIED] = True
        body = await _read_body(receive)
        answer = handler(body, scope["headers"]) if is_json(scope["headers"]) else None
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        status, content = answer
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]})
        await send({"type": "http.response.body", "body": content})


@dataclass(frozen=True)
class DirectRoutes:
    """The fast routes as serve/protocol.py answers them, in the HTTP protocol, before any ASGI: the
    handlers by (method, raw path), and the request ids, body limit and metrics of `MeasureAndLimit`."""

    handlers: dict[tuple[bytes, bytes], Callable[[bytes, Headers], Answer]]
    measure: MeasureAndLimit
    feedback_port: int | None = None  # serving.feedback_port: which port serves which route (middleware.port_serves)


async def _read_body(receive) -> bytes:
    """The whole body (MeasureAndLimit's receive stops it at the size limit)."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _replay(body: bytes, receive):
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()  # after the body: a disconnect, as the server reports it
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def is_json(headers) -> bool:
    for name, value in headers:
        if name == b"content-type":
            media_type = value.split(b";")[0].strip().lower()
            return media_type == b"application/json"
    return False


class PredictHandler:
    """POST /v1/predict for rows whose values are all numbers or null."""

    def __init__(self, predictor: Predictor, max_batch_size: int) -> None:
        self.predictor, self.model, self.max_batch_size = predictor, predictor.model, max_batch_size
        model = predictor.model
        self.features = model.preprocessor.columns
        self.encoder = RowEncoder(model.preprocessor)
        self.classes = model.classes
        names = self.features
        self.values_of = operator.itemgetter(*names) if len(names) > 1 else (lambda record: (record[names[0]],))

    def __call__(self, body: bytes, headers: Headers = ()) -> Answer:
        rows = self._rows(body)
        if rows is None:
            return None
        features = self.encoder.encode(rows)
        if features is None:
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            out = outputs(self.model, features)
        if not np.isfinite(out).all():
            return None  # the FastAPI route names the record
        return 200, orjson.dumps(self.predictor.answer(rows, scored(self.model, features, out)))

    def _rows(self, body: bytes) -> list | None:
        """The rows in feature order, if the body is plainly {"records": [...]} or {"instances": [...]}."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if payload.__class__ is not dict or len(payload) != 1:
            return None
        (field, rows), = payload.items()
        if rows.__class__ is not list or not 0 < len(rows) <= self.max_batch_size:
            return None
        width = len(self.features)
        if field == "records":
            if any(r.__class__ is not dict or len(r) != width for r in rows):
                return None
            try:
                return [self.values_of(r) for r in rows]  # every feature present and nothing else: len == width
            except KeyError:
                return None
        if field == "instances":
            return rows if all(r.__class__ is list and len(r) == width for r in rows) else None
        return None


class FeedbackHandler:
    """POST /v1/feedback from a known labeller, for labels that are all valid: {prediction_id, label} or
    {"feedback": [...]}. A missing or unknown token is left to the FastAPI route (401, 403)."""

    KEYS = {"prediction_id", "label"}

    def __init__(self, feedback, max_batch_size: int) -> None:
        self.feedback, self.max_batch_size = feedback, max_batch_size

    def __call__(self, body: bytes, headers: Headers = ()) -> Answer:
        authorization = next((value for name, value in headers if name == b"authorization"), None)
        labeller = self.feedback.labellers.identify(authorization)[0] if authorization else None
        if labeller is None:
            return None
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if payload.__class__ is not dict:
            return None
        items = payload.get("feedback") if len(payload) == 1 else [payload]
        if items.__class__ is not list or not 0 < len(items) <= self.max_batch_size:
            return None
        regression = self.feedback.model.regression
        for item in items:
            if item.__class__ is not dict or item.keys() != self.KEYS or item["prediction_id"].__class__ is not str \
                    or item["label"].__class__ not in ((int, float) if regression else (str, int)):
                return None
        checked = [{"prediction_id": i["prediction_id"], "label": i["label"] if regression else str(i["label"])} for i in items]
        if self.feedback.check_feedback(checked):
            return None
        status, answer = self.feedback.on_feedback([(i["prediction_id"], i["label"]) for i in checked], labeller)
        return status, orjson.dumps(answer)
