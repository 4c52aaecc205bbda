"""Inference server: FastAPI over a verified model artifact.

    POST /v1/predict   {"records": [{feature: value, ...}, ...]}  or  {"instances": [[v1, v2, ...], ...]}
    GET  /healthz      liveness: the process answers
    GET  /readyz       readiness: the model is loaded and its checksums verified
    GET  /metrics      Prometheus: requests and latency by route and status, predictions by class, model info

Every bad request is a 4xx whose message names the field (missing or unknown features,
wrong types, NaN/inf, an empty or oversized batch, an oversized body); never a 5xx.
Predictions go through the same preprocessing and forward pass as `toolkit predict`. Plainly
valid /v1/predict and /v1/feedback requests are answered by serve/fast_routes.py before FastAPI;
the routes here answer everything else, and are the reference the fast path is tested against.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from toolkit.errors import BadInputError
from toolkit.ml.artifacts import ModelArtifact
from toolkit.ml.input_contract import InputContract, RecordError
from toolkit.ml.predict import score_records
from toolkit.ml.signing import PublicKey, SignatureError, load_signed_artifact, public_keys_from_pem
from toolkit.serve.fast_routes import FAULTS_APPLIED, DirectRoutes, FastRoutes, FeedbackHandler, PredictHandler
from toolkit.serve.faults import FaultSwitch
from toolkit.serve.loop import FeedbackLoop
from toolkit.serve.metrics import ServerMetrics
from toolkit.serve.middleware import REQUEST_ID_KEY, MeasureAndLimit, problem_body
from toolkit.serve.predictor import Predictor
from toolkit.serving import PUBLIC_KEYS_ENV, ServingSettings

Value = Union[StrictFloat, StrictInt, StrictStr, None]


class PredictRequest(BaseModel):
    """Exactly one of `records` (objects by feature name) or `instances` (arrays in feature order)."""

    model_config = ConfigDict(extra="forbid")
    records: list[dict[str, Value]] | None = Field(None, description="records by feature name; null means missing")
    instances: list[list[Value]] | None = Field(None, description="rows in the order of GET /v1/model's features")


class Prediction(BaseModel):
    label: str | None = Field(None, description="the most probable class (a classifier)")
    probabilities: dict[str, float] | None = Field(None, description="each class's probability (a classifier)")
    value: float | None = Field(None, description="the predicted value, in the label's units (a regressor)")
    prediction_id: str | None = Field(None, description="send it back with the true label to POST /v1/feedback")


class LabelledPrediction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: StrictStr = Field(description="the prediction_id /v1/predict answered with")
    label: StrictStr | StrictInt | StrictFloat = Field(description="the true class (a regressor: the true value, a number)")


class FeedbackRequest(BaseModel):
    """One labelled prediction, or many under `feedback`."""

    model_config = ConfigDict(extra="forbid")
    feedback: list[LabelledPrediction] | None = Field(None, min_length=1)
    prediction_id: StrictStr | None = None
    label: StrictStr | StrictInt | StrictFloat | None = None


class FeedbackResponse(BaseModel):
    accepted: int = Field(description="labels taken (a label given again is answered as the first time, and counted once)")
    correct: int | None = Field(description="labels that match the prediction (a regressor: null)")
    mean_abs_error: float | None = Field(None, description="a regressor: the labels' mean absolute error against the predictions")


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[Prediction]
    ignored: list[str] | None = Field(None, description="columns the records carried that the model does not take (its label, "
                                                        "columns dropped at training); absent when there were none")
    unseen_categories: dict[str, list[Union[StrictStr, StrictInt, StrictFloat]]] | None = Field(
        None, description="categorical values the model never saw in training, by feature (scored as no category); absent when none")


class Problem(Exception):
    """A client error: HTTP status plus the field path and message."""

    def __init__(self, status: int, loc: list, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.loc, self.message, self.headers = status, loc, message, headers


def _problem_response(status: int, errors: list[dict], headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": errors}, headers=headers)


ERROR_RESPONSES = {
    413: {"description": "request body over the configured size limit"},
    415: {"description": "the body is not declared as JSON (Content-Type: application/json)"},
    422: {"description": "invalid request; `detail` names each bad field"},
}
FEEDBACK_RESPONSES = {
    **ERROR_RESPONSES,
    401: {"description": "no labeller's token: `Authorization: Bearer <token>` (toolkit feedback-token)"},
    403: {"description": "the token is no labeller's"},
    409: {"description": "a prediction already has another label (the first label stands); nothing of the batch is taken"},
}


def create_app(model_dir: str | Path, settings: ServingSettings | None = None, *, trusted_keys: list[PublicKey] | None = None,
               faults: FaultSwitch | None = None, **overrides) -> InferenceServer:
    """The server for the model in `model_dir`, assembled in steps: the model (checksums, then its
    signature against `trusted_keys`, default the PEM bundle in the settings; an ArtifactError stops
    startup), the feedback loop and predictor, the FastAPI app (the reference routes), and the
    transport around it (limits and metrics, the fast routes).
    `settings`: default from the process environment (the serving image), with `overrides` applied
    (e.g. max_batch_size=8); `faults`: the test-only fault switch (serve/faults.py)."""
    settings = (settings if settings is not None else ServingSettings.from_environ()).replace(**overrides)
    model = load_signed_artifact(model_dir, trusted_keys if trusted_keys is not None else _keys_of(settings))
    metrics = ServerMetrics(model)
    loop = settings.loop
    feedback = FeedbackLoop(model, metrics, loop) if loop is not None and loop.config.enabled else None
    predictor = Predictor(model, metrics, feedback)
    api = _api(model, predictor, feedback, settings.max_batch_size, faults, metrics)
    return _transport(api, predictor, feedback, metrics, settings, faults)


def _keys_of(settings: ServingSettings) -> list[PublicKey]:
    if not settings.public_keys:
        raise SignatureError(f"no public key to verify the model's signature against: set {PUBLIC_KEYS_ENV} "
                             "(or `toolkit serve --env ENV` / --public-key FILE).")
    return public_keys_from_pem(PUBLIC_KEYS_ENV, settings.public_keys)


def _api(model: ModelArtifact, predictor: Predictor, feedback: FeedbackLoop | None, max_batch_size: int,
         faults: FaultSwitch | None, metrics: ServerMetrics) -> FastAPI:
    """The FastAPI app: the documented routes, and error handlers that answer every bad request with a 4xx naming the field."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if feedback is not None:
            feedback.start()
        yield
        if feedback is not None:
            await feedback.stop()

    app = FastAPI(title="toolkit inference server", version=model.version, lifespan=lifespan,
                  description=f"Model {model.version}: label '{model.manifest['label']}', classes {model.classes}.")
    app.state.feedback = feedback
    app.state.model = model
    app.state.signed_by = model.signed_by
    _error_handlers(app)
    _prediction_routes(app, predictor, feedback, max_batch_size, faults)
    _model_routes(app, model, metrics, max_batch_size)
    _document_predict_body(app, model, max_batch_size)
    return app


def _transport(api: FastAPI, predictor: Predictor, feedback: FeedbackLoop | None, metrics: ServerMetrics,
               settings: ServingSettings, faults: FaultSwitch | None) -> InferenceServer:
    """MeasureAndLimit (request ids, limits, metrics) → FastRoutes (the fast handlers) → the FastAPI
    app; and the same handlers for the protocol to answer directly (DirectRoutes)."""
    fast = {("POST", "/v1/predict"): PredictHandler(predictor, settings.max_batch_size)}
    if feedback is not None:
        fast[("POST", "/v1/feedback")] = FeedbackHandler(feedback, settings.max_batch_size)
    measure = MeasureAndLimit(FastRoutes(api, fast, faults), metrics=metrics, max_body_bytes=settings.max_body_bytes,
                              routes=api.router.routes, feedback_port=settings.feedback_port if feedback is not None else None)
    # The fault switch sleeps on the event loop: with it on, the fast routes stay on the ASGI path.
    direct = DirectRoutes({(m.encode(), p.encode()): h for (m, p), h in fast.items()}, measure,
                          measure.feedback_port) if faults is None else None
    return InferenceServer(api, measure, direct)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):  # MeasureAndLimit logs it: one line, with the request id
        body = problem_body(500, [], f"internal error (request id {request.scope.get(REQUEST_ID_KEY, 'unknown')})", "internal")
        return Response(body, status_code=500, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _problem_response(422, errors)

    @app.exception_handler(BadInputError)
    async def bad_input(request: Request, exc: BadInputError):
        return _problem_response(422, [{"loc": ["body"], "msg": str(exc), "type": "value_error"}])

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem):
        return _problem_response(exc.status, [{"loc": exc.loc, "msg": exc.message, "type": "value_error"}], exc.headers)


def _prediction_routes(app: FastAPI, predictor: Predictor, feedback: FeedbackLoop | None, max_batch_size: int,
                       faults: FaultSwitch | None) -> None:
    model = predictor.model
    contract = InputContract.of(model)

    @app.post("/v1/predict", response_model=PredictResponse, responses=ERROR_RESPONSES)
    async def predict(request: Request) -> PredictResponse:
        """The reference path, and the one that names every bad field: FastRoutes answers plainly valid requests first."""
        if faults is not None and not request.scope.get(FAULTS_APPLIED):
            await faults.apply()
        _require_json(request.headers.get("content-type"))
        body = await request.body()  # read here, not by FastAPI; MeasureAndLimit stops it at max_body_bytes
        try:
            payload = PredictRequest.model_validate_json(body or b"null")
        except ValidationError as exc:  # invalid JSON too: name the fields
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        request_contract = contract.fresh()
        columns = _columns(payload, request_contract, max_batch_size)
        rows = list(zip(*columns.values(), strict=True))  # in feature order
        # Built by score_records in the documented shape; skip re-validating it through pydantic.
        answer = predictor.answer(rows, score_records(model, columns, "request"))
        if request_contract.ignored:
            answer["ignored"] = sorted(request_contract.ignored)
        return JSONResponse(answer)

    @app.post("/v1/feedback", response_model=FeedbackResponse, responses=FEEDBACK_RESPONSES)
    async def ground_truth(request: Request) -> FeedbackResponse:
        """The true label of earlier predictions, by their prediction_id: one, or many under `feedback`."""
        if feedback is None:
            raise Problem(404, ["path"], "this server runs without the feedback loop (feedback.enabled, toolkit serve --env)")
        labeller, status, why = feedback.labellers.identify(request.headers.get("authorization"))
        if labeller is None:
            raise Problem(status, ["header", "authorization"], why, {"WWW-Authenticate": "Bearer"} if status == 401 else None)
        _require_json(request.headers.get("content-type"))
        try:
            payload = FeedbackRequest.model_validate_json(await request.body() or b"null")
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        items = [item.model_dump() for item in payload.feedback] if payload.feedback is not None else (
            [{"prediction_id": payload.prediction_id, "label": payload.label}] if payload.prediction_id is not None else [])
        if not items or (payload.feedback is not None and payload.prediction_id is not None):
            raise Problem(422, ["body"], "give one {prediction_id, label} or a list of them under 'feedback'")
        if len(items) > max_batch_size:
            raise Problem(422, ["body", "feedback"], f"{len(items)} labels are over the limit of {max_batch_size}")
        if not model.regression:  # a class is its name: 1 and "1" are the same class
            for item in items:
                item["label"] = str(item["label"])
        problems = feedback.check_feedback(items)
        if problems:
            return _problem_response(422, [{"loc": loc, "msg": message, "type": "value_error"} for loc, message in problems])
        status, answer = feedback.on_feedback([(i["prediction_id"], i["label"]) for i in items], labeller)
        return JSONResponse(answer, status_code=status)


def _model_routes(app: FastAPI, model: ModelArtifact, metrics: ServerMetrics, max_batch_size: int) -> None:
    # HEAD (load balancers probe with it) as a route of its own, out of the schema: one route for
    # both methods gave both the same OpenAPI operationId, which must be unique.
    @app.get("/v1/model")
    @app.head("/v1/model", include_in_schema=False)
    def describe() -> dict:
        """The model's version, features (in `instances` order), classes and label rule."""
        pre = model.preprocessor
        categorical = {c["name"]: c["categories"] for c in pre.categorical}
        return {
            "model_version": model.version, "label": model.manifest["label"], "target": model.manifest["target"],
            "task": "regression" if model.regression else "classification", "classes": model.classes, "features": pre.columns,
            "categorical": categorical, "max_batch_size": max_batch_size,
            "trained_on": model.manifest.get("trained_on"), "sweep": (model.manifest.get("training") or {}).get("sweep"),
        }

    @app.get("/healthz")
    @app.head("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    @app.head("/readyz", include_in_schema=False)
    def readyz() -> dict:
        return {"status": "ready", "model_version": model.version}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)


class InferenceServer:
    """The ASGI app `toolkit serve` runs: MeasureAndLimit (ids, limits, metrics) → FastRoutes → the
    FastAPI app, so the fast routes never enter the framework; and `direct`, the fast routes for
    serve/protocol.py to answer before any ASGI. The FastAPI app's attributes (state, openapi,
    routes) are reachable on it."""

    def __init__(self, api: FastAPI, asgi, direct: DirectRoutes | None = None) -> None:
        self.api, self.asgi, self.direct = api, asgi, direct

    async def __call__(self, scope, receive, send) -> None:
        await self.asgi(scope, receive, send)

    def __getattr__(self, name: str):
        return getattr(self.api, name)


def _require_json(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json" and not (media_type.startswith("application/") and media_type.endswith("+json")):
        raise Problem(415, ["header", "content-type"],
                      f"the body must be JSON sent as Content-Type: application/json, got {content_type or 'no Content-Type'!r}")


def _columns(payload: PredictRequest, contract: InputContract, max_batch_size: int) -> dict[str, list]:
    """Check a request against the model's input contract (ml/input_contract.py) and return raw values by column."""
    features = contract.features
    if (payload.records is None) == (payload.instances is None):
        raise Problem(422, ["body"], "give exactly one of 'records' (objects by feature name) or 'instances' (arrays)")
    field = "records" if payload.records is not None else "instances"
    rows = payload.records if payload.records is not None else payload.instances
    if not rows:
        raise Problem(422, ["body", field], "empty batch: send at least one record")
    if len(rows) > max_batch_size:
        raise Problem(422, ["body", field], f"batch of {len(rows)} records is over the limit of {max_batch_size}")
    columns: dict[str, list] = {name: [] for name in features}
    try:
        for i, row in enumerate(rows):
            if isinstance(row, dict):
                values = contract.values(i, row)
            else:
                if len(row) != len(features):
                    raise Problem(422, ["body", field, i], f"expected {len(features)} values in the order {features}, got {len(row)}")
                values = row
                for name, value in zip(features, values, strict=True):
                    contract.check_value(i, name, value)
            for name, value in zip(features, values, strict=True):
                columns[name].append(value)
    except RecordError as exc:
        raise Problem(422, ["body", field, exc.index, *([exc.feature] if exc.feature else [])], str(exc)) from None
    return columns


def predict_body_schema(model: ModelArtifact, max_batch_size: int) -> dict:
    """JSON schema of a valid /v1/predict body for this model: its features, their types, the batch limit."""
    categorical = {c["name"] for c in model.preprocessor.categorical}
    features = model.preprocessor.columns

    def value(name: str) -> dict:
        kinds = ["string", "number", "null"] if name in categorical else ["number", "null"]
        return {"type": kinds, "description": "categorical" if name in categorical else "numeric; null = missing"}

    batch = {"minItems": 1, "maxItems": max_batch_size}
    record = {"type": "object", "properties": {f: value(f) for f in features}, "required": features,
              "additionalProperties": False}
    row = {"type": "array", "items": {"type": ["number", "string", "null"]},
           "minItems": len(features), "maxItems": len(features), "description": f"values in the order {features}"}
    return {
        "type": "object", "additionalProperties": False,
        "description": "exactly one of records or instances",
        "properties": {
            "records": {"type": "array", "items": record, **batch},
            "instances": {"type": "array", "items": row, **batch},
        },
        "oneOf": [{"required": ["records"]}, {"required": ["instances"]}],
    }


def _document_predict_body(app: FastAPI, model: ModelArtifact, max_batch_size: int) -> None:
    """Document POST /v1/predict's body (parsed by hand in the route) from the model's features."""
    original = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schema.setdefault("components", {}).setdefault("schemas", {})["PredictRequest"] = predict_body_schema(model, max_batch_size)
        schema["paths"]["/v1/predict"]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictRequest"}}},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
