"""What every manifest shares: the labels that mark the toolkit's objects, metadata, the
restricted security contexts, resources, and where GPU add-ons run."""

from __future__ import annotations

from toolkit.config import EnvironmentConfig, Resources

MANAGED_BY = "toolkit"
# Label on every object `toolkit deploy` owns; prune deletes only objects carrying it.
OWNER_LABEL = "toolkit.dev/environment"
COMPONENT_LABEL = "toolkit.dev/component"
# Which apply set an object belongs to: "platform" (toolkit deploy, pruned) or "training" (Jobs).
SET_LABEL = "toolkit.dev/apply-set"
MODEL_VERSION_ANNOTATION = "toolkit.dev/model-version"
IMAGE_ANNOTATION = "toolkit.dev/image"
SERVING = "serving"
TRAINING = "training"
ADDON_NAMESPACE = "kube-system"  # platform add-ons (the NVIDIA device plugin)
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
RUN_AS_USER = 10001  # the serving image's user (toolkit/images/Dockerfile)


def object_labels(config: EnvironmentConfig, component: str, extra: dict | None = None) -> dict:
    return {"app.kubernetes.io/name": component, "app.kubernetes.io/part-of": "ml-platform",
            "app.kubernetes.io/managed-by": MANAGED_BY, OWNER_LABEL: config.name, COMPONENT_LABEL: component, **(extra or {})}


def object_meta(config: EnvironmentConfig, name: str, component: str, namespace: str | None = None, annotations: dict | None = None) -> dict:
    meta = {"name": name, "labels": object_labels(config, component)}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = annotations
    return meta


def restricted_container_security() -> dict:
    """Pod Security 'restricted' plus a read-only root filesystem."""
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER, "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"}}


def resource_requirements(resources: Resources, gpus: int = 0) -> dict:
    requests = {"cpu": resources.requests.cpu, "memory": resources.requests.memory}
    limits = {"cpu": resources.limits.cpu, "memory": resources.limits.memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)  # extended resources: limits only, as a string quantity
    return {"requests": requests, "limits": limits}


def gpu_node_affinity(config: EnvironmentConfig) -> dict | None:
    """Node affinity to the GPU pools' labels (None when they carry none)."""
    gpu_labels = [pool.labels for pool in config.gpu_pools() if pool.labels]
    if not gpu_labels:
        return None
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": key, "operator": "In", "values": [value]} for key, value in labels.items()]}
        for labels in gpu_labels]}}}


def in_set(obj: dict, apply_set: str) -> dict:
    obj["metadata"]["labels"][SET_LABEL] = apply_set
    return obj
