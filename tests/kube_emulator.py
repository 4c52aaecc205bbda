"""A Kubernetes API emulator for tests: kmock's KubernetesEmulator, extended with what the toolkit uses.

kmock (by the kopf author) stores objects and serves the REST verbs. We add, strict where the API
server is strict:
- server-side apply (PATCH application/apply-patch+yaml) with field ownership per manager
  (tests/kube_apply.py): fields a manager stops applying are removed unless another manager owns
  them, conflicts are 409 unless forced; uid/creationTimestamp/status kept, generation counts
  spec changes; the API server's defaults that matter here (Deployment replicas and strategy,
  Service clusterIP, a Job's selector);
- what the API server refuses: a namespaced object in a namespace that does not exist (404);
  unknown fields under `fieldValidation=Strict` (400, from the official schemas that
  kubernetes-validate ships); changing an immutable field (Deployment/DaemonSet selector, Job
  selector and template, Service clusterIP: 422); a selector that does not match the template's
  labels (422);
- uid, resourceVersion, generation, creationTimestamp on every write;
- label and field selectors on lists; pod logs; events;
- the service proxy (/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH) as the API server does
  it: the Service and its named port must exist and a ready pod must match its selector (else 503
  "no endpoints available"), then the request goes to `service_backends[(NS, NAME)]`, a real server;
- a controller simulator: Deployments roll out (succeed), crash-loop, fail to pull or stall by
  image, as the real controller reports it (status, pods, events), taking old pods down as the
  Deployment's strategy allows (maxUnavailable, maxSurge, Recreate); Jobs complete or fail;
  Indexed Jobs as the Job controller runs them (1.31+): JOB_COMPLETION_INDEX and the
  batch.kubernetes.io/job-completion-index annotation and label on each pod, never more than
  `parallelism` pods running, per-index retries (backoffLimitPerIndex, the failure count
  annotation), maxFailedIndexes, completedIndexes/failedIndexes, and the interim and final
  conditions (SuccessCriteriaMet then Complete; FailureTarget then Failed, reason FailedIndexes or
  MaxFailedIndexesExceeded);
  `scale()` writes replicas the way the HPA controller does (an Update by its own manager).
It runs on 127.0.0.1 in a background thread so the synchronous `kubernetes` client can talk to it.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import itertools
import json
import math
import re
import threading
import uuid

import aiohttp.web
import kmock
import kube_apply
from kmock._internal import references

_counter = itertools.count(1)
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
GROUPS = {"apps/v1": "apps", "batch/v1": "batch", "autoscaling/v2": "autoscaling", "policy/v1": "policy",
          "networking.k8s.io/v1": "networking.k8s.io"}
SCHEMA_VERSION = "1.31.0"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code,
                                      "reason": reason, "message": message}, status=code)


class Refused(Exception):
    """The API server's answer to a request it does not carry out."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _qualified(obj: dict) -> str:
    """`Deployment.apps "serving"`, as the API server names an object in its errors."""
    group = GROUPS.get(obj.get("apiVersion", ""), "")
    return f'{obj.get("kind")}{"." + group if group else ""} "{obj["metadata"]["name"]}"'


def _invalid(obj: dict, field: str, value: object, detail: str) -> Refused:
    return Refused(422, "Invalid", f"{_qualified(obj)} is invalid: {field}: Invalid value: {value!r}: {detail}")


def unknown_fields(obj: dict) -> list[str]:
    """Fields the official schema of the object's kind does not declare ('.spec.foo')."""
    import jsonschema
    import kubernetes_validate.utils as kv
    from referencing import Registry, Resource

    version = kv.major_minor(SCHEMA_VERSION)
    api = obj.get("apiVersion", "").replace(".k8s.io", "").replace("/", "-")
    directory = f"v{[v for v in kv.all_versions() if kv.major_minor(v) <= version][-1]}-local-strict"
    try:
        schema = kv.schema_contents(f"kubernetes-json-schema/{directory}/{obj['kind'].lower()}-{api}.json", SCHEMA_VERSION)
    except FileNotFoundError:
        return []
    definitions = kv.schema_contents(f"kubernetes-json-schema/{directory}/_definitions.json", SCHEMA_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    found = []
    for error in jsonschema.validators.Draft202012Validator(schema, registry=registry).iter_errors(obj):
        if error.validator == "additionalProperties":
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            found += [f"{path}.{name}" for name in extra]
    return found


def _drop(obj: dict, path: str) -> None:
    """Remove the field at '.spec.containers[0].foo'."""
    parts = [int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", path)]
    node = obj
    for part in parts[:-1]:
        node = node[part]
    node.pop(parts[-1], None)


def _selector(labels: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def _matches_labels(obj: dict, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels", {}) or {}
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value.lstrip("="):
                return False
        elif labels.get(term) is None:
            return False
    return True


def _matches_fields(obj: dict, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        path, value = term.split("=", 1)
        node = obj
        for part in path.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if node != value:
            return False
    return True


class PlatformEmulator(kmock.KubernetesEmulator):
    """Set `behaviour[image]` to 'crash', 'pull-error' or 'stall' (default: roll out fine);
    `job_behaviour[job name prefix]` to 'fail' (default: complete); `pod_logs[pod]` to a log text;
    `job_runner` to a function that really runs a Job (its object in, (succeeded, log, termination
    message) out; `run_toolkit_job` is one), in a thread while the pod shows Running; an Indexed
    Job's pod gets the Job with JOB_COMPLETION_INDEX in its container's env. `max_running[job]` is
    the most pods of a Job that ran at once."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.behaviour: dict[str, str] = {}
        self.job_behaviour: dict[str, str] = {}
        self.job_runner = None
        self.max_running: dict[str, int] = {}
        self.pod_logs: dict[str, str] = {}
        self._messages: dict[str, str] = {}  # an Indexed Job's pods' termination messages
        self.delay = 0.2
        self.deleted_pods: list[dict] = []
        self.service_backends: dict[tuple[str, str], str] = {}  # (namespace or "*", service) → http://host:port

    # -- storage helpers (call with self._lock held, or from the loop thread)
    def _key(self, resource, namespace, name):
        return (resource, namespace, name)

    def _live(self, key) -> dict | None:
        if key in self._objects and not self._objects[key].deleted:
            return copy.deepcopy(self._objects[key].raw)
        return None

    def _store(self, key, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(_counter))
        if key in self._objects and not self._objects[key].deleted:
            self._objects[key].history.append(obj)
        else:
            self._objects[key] = obj
        return obj

    def _remove(self, key) -> None:
        if key in self._objects and not self._objects[key].deleted:
            self._objects[key].delete()

    def objects_of(self, plural: str, namespace: str | None = None) -> list[dict]:
        return [copy.deepcopy(obj.raw) for (res, ns, _), obj in list(self._objects.items())
                if res.plural == plural and not obj.deleted and (namespace is None or ns == namespace)]

    # -- request handling
    NAMESPACES = references.resource("", "v1", "namespaces")

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        # kmock 0.8 cannot parse /api/v1/namespaces[/NAME] (it takes NAME for a namespace scope
        # and fails on the bare list), so the cluster-scoped Namespace kind is served here.
        parts = raw_request.path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
            return await self._namespaces(raw_request, parts[3] if len(parts) == 4 else None)
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 7 and parts[4] == "services" and parts[6] == "proxy":
            return await self._service_proxy(raw_request, parts[3], parts[5], "/" + "/".join(parts[7:]))
        return await super().__call__(raw_request)

    async def _service_proxy(self, raw: aiohttp.web.BaseRequest, namespace: str, target: str, path: str) -> aiohttp.web.StreamResponse:
        name, _, port = target.partition(":")
        async with self._lock:
            service = self._live(self._key(references.resource("", "v1", "services"), namespace, name))
            if service is None:
                return _status(404, "NotFound", f'services "{name}" not found')
            ports = service["spec"].get("ports", [])
            selector = _selector(service["spec"].get("selector", {}))
            ready = [p for p in self.objects_of("pods", namespace) if _matches_labels(p, selector)
                     and {"type": "Ready", "status": "True"} in p["status"].get("conditions", [])]
        if not ready or not any(port in ("", p.get("name"), str(p.get("port"))) for p in ports):
            return _status(503, "ServiceUnavailable", f'no endpoints available for service "{target}"')
        backend = self.service_backends.get((namespace, name)) or self.service_backends.get(("*", name))
        if backend is None:
            return _status(503, "ServiceUnavailable", "error trying to reach service: dial tcp: connect: connection refused")
        async with aiohttp.ClientSession() as session:
            async with session.request(raw.method, backend + path, data=await raw.read(), params=raw.query,
                                       headers={"Content-Type": raw.headers.get("Content-Type", "application/octet-stream")}) as answer:
                return aiohttp.web.Response(status=answer.status, body=await answer.read(),
                                            content_type=answer.content_type or "application/octet-stream")

    async def _namespaces(self, raw: aiohttp.web.BaseRequest, name: str | None) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        key = self._key(self.NAMESPACES, None, name)
        async with self._lock:
            if name is None:
                items = self.objects_of("namespaces")
                selector = raw.query.get("labelSelector")
                items = [o for o in items if not selector or _matches_labels(o, selector)]
                return aiohttp.web.json_response({"apiVersion": "v1", "kind": "NamespaceList", "metadata": {}, "items": items})
            if raw.method == "PATCH":
                try:
                    return aiohttp.web.json_response(self._apply_object(
                        key, None, json.loads(body), raw.query.get("fieldManager", ""), raw.query.get("force") == "true",
                        raw.query.get("fieldValidation", "Warn")))
                except Refused as refused:
                    return _status(refused.code, refused.reason, refused.message)
            live = self._live(key)
            if live is not None and raw.method == "DELETE":
                self._remove(key)
        if live is None:
            return _status(404, "NotFound", f'namespaces "{name}" not found')
        return aiohttp.web.json_response(live)

    @staticmethod
    def _target(request: kmock.Request) -> tuple[str | None, str | None]:
        return request.namespace, request.name

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is None:
            return await super()._handle(request)
        namespace, name = self._target(request)
        content_type = request.headers.get("Content-Type", "")
        if request.method == "PATCH" and "apply-patch" in content_type:
            async with self._lock:
                try:
                    obj = self._apply(request, namespace, name)
                except Refused as refused:
                    return _status(refused.code, refused.reason, refused.message)
            return aiohttp.web.json_response(obj)
        if request.subresource == "log" and request.method == "GET":
            return aiohttp.web.Response(text=self.pod_logs.get(name, ""))
        if request.method == "GET" and name is None:
            return aiohttp.web.json_response(await self._list(request))
        if request.method in ("GET", "DELETE") and name is not None and request.subresource is None:
            key = self._key(request.resource, namespace, name)
            async with self._lock:
                live = self._live(key)
                if live is not None and request.method == "DELETE":
                    self._remove(key)
            if live is None:
                return _status(404, "NotFound", f'"{name}" not found')
            return aiohttp.web.json_response(live)
        return await super()._handle(request)

    async def _list(self, request: kmock.Request) -> dict:
        async with self._lock:
            items = [copy.deepcopy(obj.raw) for (res, ns, _), obj in list(self._objects.items())
                     if res == request.resource and not obj.deleted and (request.namespace is None or ns == request.namespace)]
        if request.params.get("labelSelector"):
            items = [o for o in items if _matches_labels(o, request.params["labelSelector"])]
        if request.params.get("fieldSelector"):
            items = [o for o in items if _matches_fields(o, request.params["fieldSelector"])]
        return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": str(next(_counter))}, "items": items}

    def _apply(self, request: kmock.Request, namespace: str | None, name: str) -> dict:
        key = self._key(request.resource, namespace, name)
        return self._apply_object(key, namespace, request.data, request.params.get("fieldManager", ""),
                                  request.params.get("force") == "true", request.params.get("fieldValidation", "Warn"))

    def _namespace_exists(self, namespace: str) -> bool:  # call with the lock held
        return namespace in SYSTEM_NAMESPACES or self._live(self._key(self.NAMESPACES, None, namespace)) is not None

    def _apply_object(self, key, namespace: str | None, body: dict, manager: str, force: bool = True,
                      validation: str = "Warn") -> dict:
        """Server-side apply by one manager, with the API server's checks, defaults and field ownership."""
        if namespace and not self._namespace_exists(namespace):
            raise Refused(404, "NotFound", f'namespaces "{namespace}" not found')
        unknown = unknown_fields(body)
        if unknown and validation == "Strict":
            raise Refused(400, "BadRequest", f"failed to create typed patch object ({namespace or ''}/{key[2]}; "
                                             f"{body.get('apiVersion')}, Kind={body.get('kind')}): {unknown[0]}: field not declared in schema")
        for path in unknown:  # Warn (the API's default) and Ignore: the field is dropped
            _drop(body, path)
        live = self._live(key)
        try:
            applied, owners = kube_apply.apply(live, body, manager, force)
        except kube_apply.Conflict as conflict:
            names = ", ".join(f'conflict with "{m}": .{".".join(p)}' for m, p in conflict.fields)
            raise Refused(409, "Conflict", f"Apply failed with {len(conflict.fields)} conflict(s): {names}") from None
        meta = applied.setdefault("metadata", {})
        if namespace:
            meta["namespace"] = namespace
        self._defaults(applied, live)
        self._validate(applied, live)
        if live is None:
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
            changed = True
        else:
            old_meta = live["metadata"]
            meta.update(uid=old_meta["uid"], creationTimestamp=old_meta["creationTimestamp"])
            changed = applied.get("spec") != live.get("spec")
            meta["generation"] = old_meta.get("generation", 1) + (1 if changed else 0)
            if "status" in live:
                applied["status"] = live["status"]
        meta["managedFields"] = kube_apply.managed_fields(owners, applied.get("apiVersion", ""), _now())
        stored = self._store(key, applied)
        if changed and applied.get("kind") == "Deployment":
            asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(self._roll(key)))
        if live is None and applied.get("kind") == "Job":
            run = self._run_indexed_job if applied["spec"].get("completionMode") == "Indexed" else self._run_job
            asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(run(key)))
        return copy.deepcopy(stored)

    def _defaults(self, obj: dict, live: dict | None) -> None:
        """The API server's defaulting, where the toolkit's behaviour depends on it."""
        spec = obj.get("spec")
        if spec is None:
            return
        if obj["kind"] == "Deployment":
            spec.setdefault("replicas", 1)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        elif obj["kind"] == "Service" and spec.get("type", "ClusterIP") == "ClusterIP":
            assigned = (live or {}).get("spec", {}).get("clusterIP") or f"10.96.{next(_counter) % 250}.{next(_counter) % 250 + 1}"
            spec.setdefault("clusterIP", assigned)
        elif obj["kind"] == "Job" and not spec.get("manualSelector") and live is None:
            uid_label = {"batch.kubernetes.io/controller-uid": str(uuid.uuid4())}
            spec.setdefault("selector", {"matchLabels": uid_label})
            spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(uid_label)

    def _validate(self, obj: dict, live: dict | None) -> None:
        spec, kind = obj.get("spec") or {}, obj["kind"]
        if kind in ("Deployment", "DaemonSet", "Job") and "selector" in spec:
            wanted = spec["selector"].get("matchLabels", {})
            labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
            if any(labels.get(k) != v for k, v in wanted.items()):
                raise _invalid(obj, "spec.template.metadata.labels", labels, "`selector` does not match template `labels`")
        if live is None:
            return
        before = live.get("spec") or {}
        immutable = {"Deployment": ["selector"], "DaemonSet": ["selector"], "Job": ["selector", "template"]}.get(kind, [])
        for field in immutable:
            if field in before and spec.get(field) != before[field]:
                raise _invalid(obj, f"spec.{field}", spec.get(field), "field is immutable")
        if kind == "Service" and before.get("clusterIP") and spec.get("clusterIP") != before["clusterIP"]:
            raise _invalid(obj, "spec.clusterIPs[0]", [spec.get("clusterIP")], "may not change once set")

    def scale(self, namespace: str, name: str, replicas: int, manager: str = "kube-controller-manager") -> None:
        """Set a Deployment's replicas as the HPA controller does: an Update through the scale
        subresource, by its own field manager (call through EmulatorThread.call)."""
        key = self._key(references.resource("apps", "v1", "deployments"), namespace, name)
        live = self._live(key)
        new = copy.deepcopy(live)
        new["spec"]["replicas"] = replicas
        owners = kube_apply.update(live, new, manager)
        new["metadata"]["managedFields"] = kube_apply.managed_fields(owners, new["apiVersion"], _now())
        new["metadata"]["generation"] = live["metadata"].get("generation", 1) + 1
        self._store(key, new)
        asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(self._roll(key)))

    # -- controller simulator
    def _event(self, namespace: str, kind: str, name: str, type_: str, reason: str, message: str) -> None:
        event_name = f"{name}.{next(_counter)}"
        self._store(self._key(references.resource("", "v1", "events"), namespace, event_name), {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": event_name, "namespace": namespace},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
            "type": type_, "reason": reason, "message": message, "lastTimestamp": _now(), "count": 1})

    def _pod(self, namespace: str, name: str, labels: dict, image: str, phase: str, ready: bool, waiting: dict | None,
             message: str | None = None, annotations: dict | None = None) -> None:
        state = {"waiting": waiting} if waiting else {"running": {"startedAt": _now()}} if phase == "Running" else \
            {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1, "reason": "Completed" if phase == "Succeeded" else "Error",
                            **({"message": message} if message else {})}}
        self._store(self._key(references.resource("", "v1", "pods"), namespace, name), {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                         **({"annotations": annotations} if annotations else {})},
            "spec": {"containers": [{"name": "main", "image": image}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [{"name": "main", "image": image, "ready": ready, "restartCount": 3 if waiting else 0,
                                              "state": state}]}})

    async def _roll(self, key) -> None:
        await asyncio.sleep(self.delay)
        async with self._lock:
            deployment = self._live(key)
            if deployment is None:
                return
            resource_pods = references.resource("", "v1", "pods")
            namespace, name = key[1], key[2]
            spec, meta = deployment["spec"], deployment["metadata"]
            template = spec["template"]
            image = template["spec"]["containers"][0]["image"]
            labels = template["metadata"]["labels"]
            wanted = spec.get("replicas", 1)
            revision = meta["generation"]
            pods = [p for p in self.objects_of("pods", namespace) if _matches_labels(p, _selector(spec["selector"]["matchLabels"]))]
            old = [p for p in pods if p["spec"]["containers"][0]["image"] != image]
            mode = self.behaviour.get(image, "succeed")
            status = {"observedGeneration": revision}
            if mode == "succeed":
                current = [p for p in pods if p["spec"]["containers"][0]["image"] == image]
                for pod in old + current[wanted:]:  # the old ReplicaSet, and a scale-down
                    self.deleted_pods.append(pod)
                    self._remove(self._key(resource_pods, namespace, pod["metadata"]["name"]))
                for i in range(len(current), wanted):  # a rollback scales the old ReplicaSet's pods back
                    self._pod(namespace, f"{name}-{revision}-{i}", labels, image, "Running", True, None)
                status.update(replicas=wanted, updatedReplicas=wanted, readyReplicas=wanted, availableReplicas=wanted,
                              conditions=[{"type": "Available", "status": "True"},
                                          {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}])
                self._event(namespace, "Deployment", name, "Normal", "ScalingReplicaSet", f"Scaled up replica set {name}-{revision} to {wanted}")
            else:
                pod_name = f"{name}-{revision}-0"
                waiting = {"crash": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"},
                           "pull-error": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}}.get(mode)
                self._pod(namespace, pod_name, labels, image, "Running" if mode == "stall" else "Pending", False, waiting)
                event = {"crash": ("BackOff", "Back-off restarting failed container"),
                         "pull-error": ("Failed", f'Failed to pull image "{image}": not found'),
                         "stall": ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503")}[mode]
                self._event(namespace, "Pod", pod_name, "Warning", *event)
                serving = self._old_pods_kept(spec, wanted, len(old))
                for pod in old[serving:]:  # as many as the strategy lets the controller take down before new ones are ready
                    self.deleted_pods.append(pod)
                    self._remove(self._key(resource_pods, namespace, pod["metadata"]["name"]))
                status.update(replicas=serving + 1, updatedReplicas=1, readyReplicas=serving, availableReplicas=serving,
                              unavailableReplicas=max(wanted - serving, 1))
            deployment["status"] = status
            self._store(key, deployment)

    @staticmethod
    def _old_pods_kept(spec: dict, wanted: int, old: int) -> int:
        """Old pods the Deployment controller keeps while the new ones are not ready: all of them down
        at once with Recreate; with RollingUpdate, at least `replicas - maxUnavailable` available."""
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 0
        unavailable = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
        if isinstance(unavailable, str) and unavailable.endswith("%"):
            unavailable = math.floor(wanted * int(unavailable[:-1]) / 100)  # the controller rounds maxUnavailable down
        return max(0, min(old, wanted - int(unavailable)))

    async def _run_job(self, key) -> None:
        namespace, name = key[1], key[2]
        resource_pods = references.resource("", "v1", "pods")
        async with self._lock:
            job = self._live(key)
            image = job["spec"]["template"]["spec"]["containers"][0]["image"]
            labels = {**job["spec"]["template"]["metadata"].get("labels", {}), "job-name": name}
            pod = f"{name}-x7k2p"
            self._pod(namespace, pod, labels, image, "Running", True, None)
            job["status"] = {"active": 1, "startTime": _now()}
            self._store(key, job)
        await asyncio.sleep(self.delay * 2)
        fail = any(name.startswith(prefix) and mode == "fail" for prefix, mode in self.job_behaviour.items())
        message = None
        if self.job_runner is not None:
            succeeded, self.pod_logs[pod], message = await asyncio.to_thread(self.job_runner, job)
            fail = not succeeded
        async with self._lock:
            job = self._live(key)
            self._remove(self._key(resource_pods, namespace, pod))
            # the kubelet keeps the last 4096 bytes of the termination message file
            self._pod(namespace, pod, labels, image, "Failed" if fail else "Succeeded", False, None, message and message[-4096:])
            if fail:
                job["status"] = {"failed": job["spec"].get("backoffLimit", 0) + 1, "startTime": job["status"]["startTime"],
                                 "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                 "message": "Job has reached the specified backoff limit"}]}
            else:
                job["status"] = {"succeeded": 1, "startTime": job["status"]["startTime"], "completionTime": _now(),
                                 "conditions": [{"type": "Complete", "status": "True"}]}
            self._store(key, job)


    async def _run_indexed_job(self, key) -> None:
        """completionMode Indexed, as the Job controller runs it (see the module docstring)."""
        namespace, name = key[1], key[2]
        resource_pods = references.resource("", "v1", "pods")
        job = self._live(key)
        spec = job["spec"]
        completions, parallelism = spec["completions"], spec.get("parallelism", 1)
        per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
        template = spec["template"]
        image = template["spec"]["containers"][0]["image"]
        pending, failures = list(range(completions)), {}
        completed, failed, running = set(), set(), {}
        counts = {"succeeded": 0, "failed": 0}
        started = _now()

        def store_status(conditions: list[dict] | None = None, done: bool = False) -> None:
            live = self._live(key)
            status = {"startTime": started, "active": len(running), "succeeded": counts["succeeded"], "failed": counts["failed"],
                      "completedIndexes": _ranges(completed), "failedIndexes": _ranges(failed), "uncountedTerminatedPods": {}}
            status = {k: v for k, v in status.items() if v not in ("", 0) or k in ("startTime", "uncountedTerminatedPods")}
            if conditions:
                status["conditions"] = conditions
            if done and not failed:
                status["completionTime"] = _now()
            live["status"] = status
            self._store(key, live)

        async def run_pod(index: int, pod: str) -> tuple[int, str, bool]:
            await asyncio.sleep(self.delay)
            if self.job_runner is None:
                return index, pod, not any(name.startswith(p) and m == "fail" for p, m in self.job_behaviour.items())
            pod_job = copy.deepcopy(job)
            container = pod_job["spec"]["template"]["spec"]["containers"][0]
            container["env"] = [*container.get("env", []), {"name": "JOB_COMPLETION_INDEX", "value": str(index)}]
            succeeded, self.pod_logs[pod], message = await asyncio.to_thread(self.job_runner, pod_job)
            self._messages[pod] = message
            return index, pod, succeeded

        while pending or running:
            async with self._lock:
                while pending and len(running) < parallelism:
                    index = pending.pop(0)
                    pod = f"{name}-{index}-{uuid.uuid4().hex[:5]}"
                    labels = {**template["metadata"].get("labels", {}), "job-name": name,
                              "batch.kubernetes.io/job-completion-index": str(index)}
                    annotations = {"batch.kubernetes.io/job-completion-index": str(index),
                                   "batch.kubernetes.io/job-index-failure-count": str(failures.get(index, 0))}
                    self._pod(namespace, pod, labels, image, "Running", True, None, annotations=annotations)
                    running[index] = (asyncio.ensure_future(run_pod(index, pod)), labels, annotations)
                self.max_running[name] = max(self.max_running.get(name, 0), len(running))
                store_status()
            finished, _ = await asyncio.wait([task for task, _, _ in running.values()], return_when=asyncio.FIRST_COMPLETED)
            async with self._lock:
                for task in finished:
                    index, pod, succeeded = task.result()
                    _, labels, annotations = running.pop(index)
                    self._remove(self._key(resource_pods, namespace, pod))
                    self._pod(namespace, pod, labels, image, "Succeeded" if succeeded else "Failed", False, None,
                              self._messages.get(pod) or None, annotations)
                    counts["succeeded" if succeeded else "failed"] += 1
                    if succeeded:
                        completed.add(index)
                    else:
                        failures[index] = failures.get(index, 0) + 1
                        if per_index is not None and failures[index] > per_index:
                            failed.add(index)
                        else:
                            pending.insert(0, index)  # the index is retried with a new pod
                if max_failed is not None and len(failed) > max_failed:
                    for task, _, _ in running.values():
                        task.cancel()
                    for index in list(running):
                        running.pop(index)
                    reason, message = "MaxFailedIndexesExceeded", "Job has exceeded the specified maximal number of failed indexes"
                    store_status([_condition("FailureTarget", reason, message), _condition("Failed", reason, message)], done=True)
                    return
                store_status()
        async with self._lock:
            if failed:
                reason, message = "FailedIndexes", "Job has failed indexes"
                store_status([_condition("FailureTarget", reason, message), _condition("Failed", reason, message)], done=True)
            else:
                reason, message = "CompletionsReached", "Reached expected number of succeeded pods"
                store_status([_condition("SuccessCriteriaMet", reason, message), _condition("Complete", reason, message)], done=True)


def _condition(kind: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastProbeTime": _now(), "lastTransitionTime": _now()}


def _ranges(indexes: set[int]) -> str:
    """"0-2,4": how the Job controller writes completedIndexes and failedIndexes."""
    parts, ordered = [], sorted(indexes)
    for _, run in itertools.groupby(enumerate(ordered), lambda pair: pair[1] - pair[0]):
        values = [value for _, value in run]
        parts.append(str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}")
    return ",".join(parts)


class EmulatorThread:
    """Runs a PlatformEmulator on 127.0.0.1 in its own event loop thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.emulator: PlatformEmulator | None = None
        self.url = ""
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with PlatformEmulator() as emulator, kmock.Server(emulator) as server:
            self.emulator, self.url = emulator, str(server.url).rstrip("/")
            self.ready.set()
            await self._stop.wait()
            for task in asyncio.all_tasks():  # simulated controllers still sleeping
                if task is not asyncio.current_task():
                    task.cancel()

    def __enter__(self) -> EmulatorThread:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the Kubernetes emulator did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def call(self, fn, *args):
        """Run fn(*args) on the emulator's loop (for test setup and assertions)."""
        async def run():
            async with self.emulator._lock:
                return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def reset(self) -> None:
        def clear():
            for key in list(self.emulator._objects.keys()):
                self.emulator._remove(key)
            self.emulator.behaviour.clear()
            self.emulator.job_behaviour.clear()
            self.emulator.job_runner = None
            self.emulator.pod_logs.clear()
            self.emulator.max_running.clear()
            self.emulator.deleted_pods.clear()
            self.emulator.service_backends.clear()
        self.call(clear)


def write_kubeconfig(directory, server: str):
    """A kubeconfig whose context "emu" points at the emulator at `server`; returns its path."""
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "emu",
        "clusters": [{"name": "emu", "cluster": {"server": server}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "emu"}}],
        "users": [{"name": "emu", "user": {"token": "t"}}]}))
    return kubeconfig


def run_toolkit_job(job: dict, environments: dict[str, str], root, env: dict) -> tuple[bool, str, str]:
    """What a kubelet does with a toolkit Job's pod, on this machine: the environment ConfigMap's
    files mounted (under `root`/environments), the container's env over `env`, its command run from
    the project's venv, and the file TOOLKIT_RESULT_FILE names (the container's termination-message
    path) returned as the termination message: (succeeded, log, message)."""
    import os
    import subprocess
    from pathlib import Path

    container = job["spec"]["template"]["spec"]["containers"][0]
    root = Path(root)
    (root / "environments").mkdir(parents=True, exist_ok=True)
    for name, text in environments.items():
        (root / "environments" / name).write_text(text)
    message_file = root / f"termination-log-{job['metadata']['name']}"
    message_file.unlink(missing_ok=True)
    job_env = {e["name"]: e["value"] for e in container.get("env", [])}
    if "TOOLKIT_RESULT_FILE" in job_env:
        job_env["TOOLKIT_RESULT_FILE"] = str(message_file)  # the kubelet's bind mount of terminationMessagePath
    run_env = {**os.environ, **env, **job_env, "TOOLKIT_ROOT": str(root)}
    venv = Path(__file__).resolve().parent.parent / ".venv" / "bin"
    command = container["command"]
    result = subprocess.run([str(venv / command[0]), *command[1:]], env=run_env, capture_output=True, text=True, timeout=300)
    message = message_file.read_text() if message_file.exists() else ""
    return result.returncode == 0, result.stdout + result.stderr, message
