"""Apply, prune, wait for the rollout, roll back on failure: `toolkit deploy` on a Kubernetes cluster.

Rollback re-applies the previous release (image and model version, kept in the release history
ConfigMap). The Deployment's RollingUpdate has maxUnavailable 0, so while a new version fails the
old pods keep serving; rolling back only retires the broken new ReplicaSet.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable

from toolkit.config import EnvironmentConfig
from toolkit.errors import RolloutError
from toolkit.images.release import Release, history_from_json, history_to_json, rollback_target, with_release, without_release
from toolkit.workloads.kube import FIELD_MANAGER, PRUNABLE, Kube, selector
from toolkit.workloads.manifests import (
    ADDON_NAMESPACE,
    IMAGE_ANNOTATION,
    MODEL_VERSION_ANNOTATION,
    OWNER_LABEL,
    SERVING,
    SET_LABEL,
    serving_manifests,
)

HISTORY = "toolkit-release-history"
# The field manager that takes spec.replicas over from the toolkit when an HPA starts owning it
# (Kubernetes docs, Server-Side Apply: "Transferring ownership"); it never applies again.
HANDOVER_MANAGER = "handover-to-hpa"
# Container states that will not fix themselves within a rollout.
FATAL_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CrashLoopBackOff", "CreateContainerConfigError",
                 "CreateContainerError", "RunContainerError"}

Progress = Callable[[dict], None]


@dataclass
class DeployResult:
    release: Release
    applied: list[str]
    pruned: list[str]
    seconds: float


def _ref(obj: dict) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace') + '/' if meta.get('namespace') else ''}{meta['name']}"


def apply_all(kube: Kube, objects: list[dict]) -> list[str]:
    for obj in objects:
        if obj["kind"] == "Namespace" and namespace_up_to_date(kube, obj):
            continue
        if obj["kind"] == "Deployment":
            hand_over_replicas(kube, obj)
        kube.apply(obj)
    return [_ref(obj) for obj in objects]


def namespace_up_to_date(kube: Kube, namespace: dict) -> bool:
    """The Namespace is there with every label and annotation we render: nothing to apply. The CI
    deploy role may edit inside the namespace only (EKS access entry), never the Namespace itself,
    so it is created (or changed) by an admin's deploy and left alone by CI's."""
    live = kube.get("Namespace", namespace["metadata"]["name"])
    if live is None:
        return False
    for field in ("labels", "annotations"):
        wanted, present = namespace["metadata"].get(field) or {}, live["metadata"].get(field) or {}
        if any(present.get(key) != value for key, value in wanted.items()):
            return False
    return True


def hand_over_replicas(kube: Kube, deployment: dict) -> None:
    """When the rendered Deployment stops setting replicas (an HPA owns them now) but the toolkit owns
    them on the cluster, the next apply would give the field up and the API server would reset it to 1:
    a scale-down. So the live number is first applied by HANDOVER_MANAGER, which keeps owning it."""
    if "replicas" in deployment["spec"]:
        return
    meta = deployment["metadata"]
    live = kube.get("Deployment", meta["name"], meta["namespace"])
    if live is None or not _owns(live, FIELD_MANAGER, "spec", "replicas"):
        return
    kube.apply({"apiVersion": deployment["apiVersion"], "kind": "Deployment",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
                "spec": {"replicas": live["spec"]["replicas"]}}, manager=HANDOVER_MANAGER)


def _owns(obj: dict, manager: str, *path: str) -> bool:
    for entry in obj["metadata"].get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            node = entry.get("fieldsV1", {})
            for part in path:
                node = node.get(f"f:{part}")
                if node is None:
                    break
            else:
                return True
    return False


def prune(kube: Kube, config: EnvironmentConfig, keep: list[dict]) -> list[str]:
    """Delete objects of this environment's apply set that are no longer rendered; nothing else."""
    wanted = {_ref(obj) for obj in keep}
    labels = selector({OWNER_LABEL: config.name, SET_LABEL: "platform"})
    # The add-on namespace too: dropping the last GPU pool drops the device plugin from the render.
    namespaces = sorted({obj["metadata"]["namespace"] for obj in keep if obj["metadata"].get("namespace")}
                        | {config.workloads.namespace, ADDON_NAMESPACE})
    pruned = []
    for kind in PRUNABLE:
        for namespace in namespaces:
            for live in kube.list(kind, namespace, label_selector=labels):
                live.setdefault("kind", kind)
                if _ref(live) not in wanted:
                    kube.delete(kind, live["metadata"]["name"], namespace)
                    pruned.append(_ref(live))
    return pruned


# ---------------------------------------------------------------- rollout status


def rollout_state(deployment: dict) -> tuple[bool, str]:
    """(done, message) in the manner of `kubectl rollout status`."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    generation = deployment["metadata"].get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return False, "waiting for the controller to observe the new spec"
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise RolloutError(f"rollout exceeded its progress deadline: {condition.get('message', '')}", "ProgressDeadlineExceeded")
    wanted = spec.get("replicas", 1)
    updated, total, available = (status.get(k, 0) for k in ("updatedReplicas", "replicas", "availableReplicas"))
    if updated < wanted:
        return False, f"{updated} of {wanted} updated replicas"
    if total > updated:
        return False, f"{total - updated} old replicas pending termination"
    if available < updated:
        return False, f"{available} of {updated} updated replicas available"
    return True, f"{available} of {wanted} replicas updated and available"


def failure_reason(kube: Kube, namespace: str, deployment: dict, image: str) -> str | None:
    """Why the new pods are not coming up, from their status and events (None: no verdict yet)."""
    labels = selector(deployment["spec"]["selector"]["matchLabels"])
    reasons = []
    for pod in kube.list("Pod", namespace, label_selector=labels):
        statuses = pod.get("status", {}).get("containerStatuses", [])
        if not any(c.get("image") == image for c in pod.get("spec", {}).get("containers", [])):
            continue  # an old pod
        for status in statuses:
            waiting = status.get("state", {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_WAITING:
                reasons.append(f"pod {pod['metadata']['name']}: {waiting['reason']}: {waiting.get('message', '')}".strip(": "))
        for event in kube.events_for(namespace, "Pod", pod["metadata"]["name"]):
            if event.get("type") == "Warning" and event.get("reason") in ("Unhealthy", "Failed", "BackOff"):
                reasons.append(f"pod {pod['metadata']['name']}: {event['reason']}: {event.get('message', '')}")
    return "; ".join(dict.fromkeys(reasons)) or None


def wait_for_rollout(kube: Kube, namespace: str, name: str, image: str, timeout: float, on_progress: Progress,
                     poll: float = 1.0, fail_fast_after: float = 20.0) -> None:
    """Wait until the Deployment's new ReplicaSet is fully rolled out; RolloutError on failure or timeout.

    A fatal container state (image pull error, crash loop) fails after `fail_fast_after` seconds
    instead of the whole timeout, since it will not recover on its own."""
    start = time.monotonic()
    while True:
        deployment = kube.get("Deployment", name, namespace)
        if deployment is None:
            raise RolloutError(f"Deployment {namespace}/{name} disappeared during the rollout", "Deleted")
        try:
            done, message = rollout_state(deployment)
        except RolloutError as exc:
            reason = failure_reason(kube, namespace, deployment, image) or exc.reason
            raise RolloutError(f"{exc}; {reason}", reason) from None
        elapsed = time.monotonic() - start
        on_progress({"elapsed": elapsed, "message": message, "done": done, "status": deployment.get("status", {})})
        if done:
            return
        reason = failure_reason(kube, namespace, deployment, image)
        fatal = reason and any(word in reason for word in FATAL_WAITING)
        if fatal and elapsed >= fail_fast_after:
            raise RolloutError(f"rollout of {image} failed: {reason}", reason)
        if elapsed >= timeout:
            why = reason or message
            raise RolloutError(f"rollout of {image} timed out after {timeout:.0f} s: {why}", why)
        time.sleep(poll)


# ---------------------------------------------------------------- release history


def read_history(kube: Kube, config: EnvironmentConfig) -> list[Release]:
    live = kube.get("ConfigMap", HISTORY, config.workloads.namespace)
    return history_from_json(json.loads((live or {}).get("data", {}).get("releases", "[]")))


def write_history(kube: Kube, config: EnvironmentConfig, releases: list[Release]) -> None:
    entries = history_to_json(releases)
    kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": HISTORY, "namespace": config.workloads.namespace,
                             "labels": {OWNER_LABEL: config.name, "app.kubernetes.io/managed-by": "toolkit"}},
                "data": {"releases": json.dumps(entries)}})


def live_release(kube: Kube, config: EnvironmentConfig) -> Release | None:
    deployment = kube.get("Deployment", SERVING, config.workloads.namespace)
    annotations = (deployment or {}).get("metadata", {}).get("annotations", {})
    if IMAGE_ANNOTATION in annotations:
        return Release(annotations[IMAGE_ANNOTATION], annotations.get(MODEL_VERSION_ANNOTATION, "unknown"))
    return None


# ---------------------------------------------------------------- deploy and rollback


def deploy(kube: Kube, config: EnvironmentConfig, outputs: dict, release: Release, timeout: float, on_progress: Progress = lambda e: None,
           poll: float = 1.0, public_keys: str | None = None) -> DeployResult:
    """Apply the release; on a failed rollout re-apply the previous one and raise RolloutError.
    `public_keys`: the PEM bundle the server verifies models against (toolkit/serving.py)."""
    start = time.monotonic()
    namespace = config.workloads.namespace
    previous = live_release(kube, config)
    objects = serving_manifests(config, outputs, release, public_keys)
    applied = apply_all(kube, objects)
    pruned = prune(kube, config, objects)
    try:
        wait_for_rollout(kube, namespace, SERVING, release.image, timeout, on_progress, poll=poll)
    except RolloutError as failure:
        if previous is None or previous == release:
            raise RolloutError(f"{failure} (no previous release to roll back to)", failure.reason) from None
        apply_all(kube, serving_manifests(config, outputs, previous, public_keys))
        wait_for_rollout(kube, namespace, SERVING, previous.image, timeout, on_progress, poll=poll)
        raise RolloutError(f"{failure}; rolled back to {previous.image} (model {previous.model_version}), which is serving",
                           failure.reason) from None
    write_history(kube, config, with_release(read_history(kube, config), release))
    return DeployResult(release, applied, pruned, time.monotonic() - start)


def rollback(kube: Kube, config: EnvironmentConfig, outputs: dict, timeout: float, on_progress: Progress = lambda e: None,
             poll: float = 1.0, public_keys: str | None = None, verify: Callable[[Release], object] = lambda release: None) -> DeployResult:
    """Re-deploy the release before the live one, once `verify` accepted it: the history is a
    ConfigMap the deployer can write, so what it names is checked like any deploy."""
    current = live_release(kube, config)
    target = rollback_target(read_history(kube, config), current, config.name)
    verify(target)
    result = deploy(kube, config, outputs, target, timeout, on_progress, poll=poll, public_keys=public_keys)
    if current is not None:  # the rolled-back release leaves the history
        write_history(kube, config, without_release(read_history(kube, config), current))
    return result


def status(kube: Kube, config: EnvironmentConfig) -> dict:
    namespace = config.workloads.namespace
    deployment = kube.get("Deployment", SERVING, namespace)
    if deployment is None:
        return {"deployed": False, "namespace": namespace}
    release = live_release(kube, config)
    st = deployment.get("status", {})
    events = kube.events_for(namespace, "Deployment", SERVING)[-10:]
    return {
        "deployed": True, "namespace": namespace,
        "image": release.image if release else None, "model_version": release.model_version if release else None,
        "replicas": {"desired": deployment["spec"].get("replicas", 1), "updated": st.get("updatedReplicas", 0),
                     "ready": st.get("readyReplicas", 0), "available": st.get("availableReplicas", 0)},
        "generation": deployment["metadata"].get("generation"), "observed_generation": st.get("observedGeneration"),
        "history": [r.image for r in read_history(kube, config)],
        "events": [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}" for e in events],
    }
