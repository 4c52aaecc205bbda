"""Smoke test of a released server: a real prediction on a row of the environment's dataset."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.ml.table import read_csv
from toolkit.workloads.kube import Kube
from toolkit.workloads.manifests import SERVING


def http_json(url: str, body: dict | None = None, timeout: float = 5.0, token: str | None = None) -> dict:
    """GET (or POST `body` as JSON) and parse the answer; `token`: sent as a bearer token."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def sample_record(ctx: Context, features: list[str]) -> dict:
    """The first complete row of the training dataset, restricted to the model's features."""
    training = ctx.config.training
    table = read_csv(ctx.root / training.dataset, training.delimiter)
    for i in range(len(table)):
        record = {name: table.column(name).value(i) if name in table else None for name in features}
        if all(value is not None for value in record.values()):
            return record
    raise ToolkitError(f"{training.dataset} has no complete row to smoke-test with.")


def smoke_test(call, ctx: Context, where: str) -> dict:
    """POST one record to /v1/predict through `call(path, body=None) -> dict`."""
    try:
        model = call("/v1/model")
        record = sample_record(ctx, model["features"])
        answer = call("/v1/predict", {"records": [record]})
    except (urllib.error.URLError, OSError, ValueError, ToolkitError) as exc:
        detail = exc.read().decode(errors="replace")[:300] if isinstance(exc, urllib.error.HTTPError) else exc
        raise ToolkitError(f"smoke test against {where} failed: {detail}") from None
    return {"where": where, "model_version": answer["model_version"], "record": record, "prediction": answer["predictions"][0]}


def smoke_test_url(base_url: str, ctx: Context) -> dict:
    """Straight to a server (the local runtime's endpoint)."""
    return smoke_test(lambda path, body=None: http_json(base_url + path, body), ctx, base_url)


def smoke_test_service(kube: Kube, ctx: Context) -> dict:
    """Through the API server's service proxy to the serving Service (no port-forward or ingress needed)."""
    proxy = f"/api/v1/namespaces/{ctx.config.workloads.namespace}/services/{SERVING}:http/proxy"
    return smoke_test(lambda path, body=None: kube.proxy_json(proxy + path, body), ctx, f"service/{SERVING}")
