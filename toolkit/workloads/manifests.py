"""Kubernetes manifests rendered from `toolkit.config` and the stack outputs.

Plain dicts (what the API server takes); every one is validated against the official schemas in
the tests (kubernetes-validate --strict, 1.29-1.32) and scanned by checkov. Quantities are strings.
"""

from __future__ import annotations

from toolkit.config import EnvironmentConfig, NodePoolConfig
from toolkit.images.release import Release
from toolkit.paths import Output
from toolkit.serving import ServingSettings
from toolkit.store.layout import Area, StoreLayout
from toolkit.workloads import admission, egress, observability
from toolkit.workloads.job_result import RESULT_FILE_ENV
from toolkit.workloads.objects import (  # noqa: F401  (the names other modules take from here)
    ADDON_NAMESPACE,
    COMPONENT_LABEL,
    IMAGE_ANNOTATION,
    IRSA_ANNOTATION,
    MANAGED_BY,
    MODEL_VERSION_ANNOTATION,
    OWNER_LABEL,
    RUN_AS_USER,
    SERVING,
    SET_LABEL,
    TRAINING,
    gpu_node_affinity,
    in_set,
    object_labels,
    object_meta,
    pod_security,
    resource_requirements,
    restricted_container_security,
)


def _system_pool(config: EnvironmentConfig) -> NodePoolConfig:
    return next(pool for pool in config.node_pools if not pool.gpu)


def namespace(config: EnvironmentConfig) -> dict:
    name = config.workloads.namespace
    meta = object_meta(config, name, "namespace")
    # Enforce the Pod Security Standard our pods are written for.
    meta["labels"].update({"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/warn": "restricted",
                           **admission.namespace_labels(config)})  # and admit only signed images (workloads/admission.py)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def service_account(config: EnvironmentConfig, name: str, role_arn: str | None) -> dict:
    """With an IRSA role (EKS) the pods get its AWS credentials; a cluster without one gets none."""
    annotations = {IRSA_ANNOTATION: role_arn} if role_arn else None
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": object_meta(config, name, name, config.workloads.namespace, annotations),
            # IRSA injects its own projected token; the API token is not needed.
            "automountServiceAccountToken": False}


def serving_config_map(config: EnvironmentConfig, public_keys: str | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": object_meta(config, SERVING, SERVING, config.workloads.namespace),
            "data": ServingSettings.from_config(config, public_keys).to_environ()}


def deployment(config: EnvironmentConfig, release: Release) -> dict:
    serving, ns = config.serving, config.workloads.namespace
    selector = {"app.kubernetes.io/name": SERVING, OWNER_LABEL: config.name}
    annotations = {MODEL_VERSION_ANNOTATION: release.model_version, IMAGE_ANNOTATION: release.image}
    probe = {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3}
    container = {
        "name": "server", "image": release.image, "imagePullPolicy": "Always",
        "ports": [{"name": "http", "containerPort": serving.port, "protocol": "TCP"},
                  *([{"name": "feedback", "containerPort": serving.feedback_port, "protocol": "TCP"}] if serving.feedback_port else [])],
        # The settings; the feedback credentials are read by the server from Secrets Manager with the
        # serving role (TOOLKIT_FEEDBACK_SECRET_NAME): no Secret in the cluster to create or leak.
        "envFrom": [{"configMapRef": {"name": SERVING}}],
        "resources": resource_requirements(serving.resources),
        "startupProbe": {**probe, "failureThreshold": 30, "periodSeconds": 2},
        "readinessProbe": probe,
        "livenessProbe": {**probe, "httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    spec = {
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": config.workloads.rollout_timeout_seconds,
        "selector": {"matchLabels": selector},
        # Old pods keep serving until a new one is ready; a failed rollout never drops capacity.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {
            "metadata": {"labels": object_labels(config, SERVING), "annotations": annotations},
            "spec": {
                "serviceAccountName": SERVING, "automountServiceAccountToken": False,
                "securityContext": pod_security(),
                "nodeSelector": dict(_system_pool(config).labels),
                "topologySpreadConstraints": [
                    {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector}}
                    for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
                ],
                "terminationGracePeriodSeconds": 30,
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}],
            },
        },
    }
    if not serving.autoscaling.enabled:
        spec["replicas"] = serving.replicas  # with an HPA, replicas belong to the HPA (server-side apply would fight it)
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": object_meta(config, SERVING, SERVING, ns, annotations), "spec": spec}


def service(config: EnvironmentConfig) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": object_meta(config, SERVING, SERVING, config.workloads.namespace),
            "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": SERVING, OWNER_LABEL: config.name},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                               *([{"name": "feedback", "port": config.serving.feedback_port, "targetPort": "feedback", "protocol": "TCP"}]
                                 if config.serving.feedback_port else [])]}}


def horizontal_pod_autoscaler(config: EnvironmentConfig) -> dict:
    scaling = config.serving.autoscaling
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": object_meta(config, SERVING, SERVING, config.workloads.namespace),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVING},
                     "minReplicas": scaling.min_replicas, "maxReplicas": scaling.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": scaling.target_cpu_utilization}}}]}}


def pod_disruption_budget(config: EnvironmentConfig) -> dict:
    serving = config.serving
    floor = serving.autoscaling.min_replicas if serving.autoscaling.enabled else serving.replicas
    # One replica: allow a drain to evict it (minAvailable 1 would block node upgrades forever).
    budget = {"minAvailable": floor - 1} if floor > 1 else {"maxUnavailable": 1}
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": object_meta(config, SERVING, SERVING, config.workloads.namespace),
            "spec": {**budget, "selector": {"matchLabels": {"app.kubernetes.io/name": SERVING, OWNER_LABEL: config.name}}}}


def network_policies(config: EnvironmentConfig) -> list[dict]:
    """Default-deny per workload, then exactly what its declaration in workloads/egress.py needs."""
    ns, vpc = config.workloads.namespace, config.network.vpc_cidr

    def policy(name: str, namespace: str, pod_labels: dict, ingress: list, egress: list) -> dict:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": object_meta(config, name, name if name in (SERVING, TRAINING, RETRAIN_CONTROLLER) else "addon", namespace),
                "spec": {"podSelector": {"matchLabels": pod_labels}, "policyTypes": ["Ingress", "Egress"],
                         "ingress": ingress, "egress": egress}}

    serving_ingress = [{"ports": [{"protocol": "TCP", "port": "http"}]}]
    if config.serving.feedback_port:
        serving_ingress.append({"ports": [{"protocol": "TCP", "port": "feedback"}]})
    policies = [
        policy(SERVING, ns, {"app.kubernetes.io/name": SERVING, OWNER_LABEL: config.name}, serving_ingress,
               egress.egress_rules(egress.SERVING, vpc)),
        policy(TRAINING, ns, {"app.kubernetes.io/name": TRAINING, OWNER_LABEL: config.name}, [], egress.egress_rules(egress.TRAINING, vpc)),
    ]
    if retrain_controller_enabled(config):
        policies.append(policy(RETRAIN_CONTROLLER, ns, {"app.kubernetes.io/name": RETRAIN_CONTROLLER, OWNER_LABEL: config.name},
                               [{"ports": [{"protocol": "TCP", "port": "health"}]}], egress.egress_rules(egress.RETRAIN_CONTROLLER, vpc)))
    if config.gpu_pools():
        policies.append(policy("nvidia-device-plugin", ADDON_NAMESPACE, {"app.kubernetes.io/name": "nvidia-device-plugin"}, [],
                               egress.egress_rules(egress.DEVICE_PLUGIN, vpc)))
    return policies


RETRAIN_CONTROLLER = "retrain-controller"
GITHUB_TOKEN_SECRET = "toolkit-github-dispatch"  # key `token`: a GitHub token that may send repository_dispatch (README)
CONTROLLER_PORT = 9095


def retrain_controller_enabled(config: EnvironmentConfig) -> bool:
    """The cloud's alert-driven retraining runs where AMP routes retrain alerts to the queue and a
    repository takes the dispatch (monitoring/retrain_controller.py)."""
    return config.monitoring.amp.enabled and config.monitoring.amp.alert_manager_definition and bool(dispatch_repository(config))


def dispatch_repository(config: EnvironmentConfig) -> str | None:
    """Where retrain alerts start retrain.yml: feedback.retrain.github_repository, else the repository CI trusts."""
    return config.feedback.retrain.github_repository or config.ci.github_repository


def retrain_controller_manifests(config: EnvironmentConfig, outputs: dict, release: Release) -> list[dict]:
    """The retrain controller: the alert receiver consuming the retrain queue (its IRSA role may do
    nothing else) and dispatching retrain.yml with the token of the Secret `toolkit-github-dispatch`."""
    if not retrain_controller_enabled(config):
        return []
    ns, retrain = config.workloads.namespace, config.feedback.retrain
    queue = outputs.get(Output.RETRAIN_QUEUE_URL) or f"<{Output.RETRAIN_QUEUE_URL} from the stack outputs>"
    selector = {"app.kubernetes.io/name": RETRAIN_CONTROLLER, OWNER_LABEL: config.name}
    probe = {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10, "timeoutSeconds": 2}
    container = {
        "name": "controller", "image": release.image, "imagePullPolicy": "Always",
        "command": ["python3", "-m", "toolkit.monitoring.receiver", "--host", "0.0.0.0", "--port", str(CONTROLLER_PORT),
                    "--out", "/tmp/notifications.jsonl", "--queue-url", queue, "--env", config.name,
                    "--github-repository", dispatch_repository(config), "--github-token-file", "/etc/toolkit/github/token",
                    "--retrain-debounce", str(retrain.debounce_minutes * 60)],
        "ports": [{"name": "health", "containerPort": CONTROLLER_PORT, "protocol": "TCP"}],
        "env": [{"name": "AWS_REGION", "value": config.aws.region}],
        "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"cpu": "250m", "memory": "192Mi"}},
        "readinessProbe": probe, "livenessProbe": probe,
        "securityContext": restricted_container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "github", "mountPath": "/etc/toolkit/github", "readOnly": True}],
    }
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": object_meta(config, RETRAIN_CONTROLLER, RETRAIN_CONTROLLER, ns, {IMAGE_ANNOTATION: release.image}),
                  # a broken image never takes the running controller down (it is rolled back with the release)
                  "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                           "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                           "template": {"metadata": {"labels": object_labels(config, RETRAIN_CONTROLLER)},
                                        "spec": {"serviceAccountName": RETRAIN_CONTROLLER, "automountServiceAccountToken": False,
                                                 "securityContext": pod_security(), "nodeSelector": dict(_system_pool(config).labels),
                                                 "containers": [container],
                                                 "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                                                             {"name": "github", "secret": {"secretName": GITHUB_TOKEN_SECRET,
                                                                                           "defaultMode": 0o440}}]}}}}
    return [service_account(config, RETRAIN_CONTROLLER, outputs.get(Output.RETRAIN_CONTROLLER_ROLE_ARN)), deployment]


def environment_config_map(config: EnvironmentConfig, environment_yaml: str) -> dict:
    """The environment file, mounted into training Jobs so `toolkit train --env` reads the same config."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": object_meta(config, "toolkit-environment", TRAINING, config.workloads.namespace),
            "data": {f"{config.name}.yaml": environment_yaml}}


def device_plugin_daemonset(config: EnvironmentConfig) -> dict:
    """NVIDIA device plugin: advertises `nvidia.com/gpu` on the GPU pools' nodes (a platform add-on)."""
    name = "nvidia-device-plugin"
    selector = {"app.kubernetes.io/name": name}
    affinity = gpu_node_affinity(config)
    meta = object_meta(config, name, "addon", ADDON_NAMESPACE, {
        # checkov reads these; each skip says why the add-on needs it.
        "checkov.io/skip1": "CKV_K8S_23=the plugin must run as root to create its socket in the kubelet's device-plugins dir",
        "checkov.io/skip2": "CKV_K8S_40=runs as root (see CKV_K8S_23)",
        "checkov.io/skip3": "CKV_K8S_43=upstream image by tag; set workloads.device_plugin_image to a digest mirrored in your registry",
        "checkov.io/skip4": "CKV_K8S_22=the plugin writes its socket under the hostPath mount only; root fs stays as shipped by NVIDIA",
    })
    meta["labels"]["app.kubernetes.io/name"] = name
    pod_spec = {
        "priorityClassName": "system-node-critical",
        "automountServiceAccountToken": False,
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "nvidia-device-plugin", "image": config.workloads.device_plugin_image, "imagePullPolicy": "Always",
            "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            "livenessProbe": {"exec": {"command": ["test", "-S", "/var/lib/kubelet/device-plugins/nvidia-gpu.sock"]},
                              "initialDelaySeconds": 30, "periodSeconds": 30},
            "readinessProbe": {"exec": {"command": ["test", "-S", "/var/lib/kubelet/device-plugins/nvidia-gpu.sock"]},
                               "periodSeconds": 10},
            "volumeMounts": [{"name": "device-plugins", "mountPath": "/var/lib/kubelet/device-plugins"}],
        }],
        "volumes": [{"name": "device-plugins", "hostPath": {"path": "/var/lib/kubelet/device-plugins", "type": "Directory"}}],
    }
    if affinity:
        pod_spec["affinity"] = affinity
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
            "spec": {"selector": {"matchLabels": selector}, "updateStrategy": {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {**meta["labels"]}}, "spec": pod_spec}}}


def training_job(config: EnvironmentConfig, outputs: dict, release: Release, name: str, command: list[str] | None = None) -> dict:
    """A GPU training Job: `toolkit train` in the released image, its artifact uploaded to the S3 store
    (`command`: another toolkit command instead, e.g. a retraining's challenger)."""
    remote = config.workloads.remote_training
    store = StoreLayout.of(config, artifact_bucket(config, outputs))
    command = command or ["toolkit", "train", "--env", config.name, "--data", store.dataset(config.training.dataset.rsplit('/', 1)[-1]),
                          "--out", "/tmp/artifacts", "--upload", store.area_url(Area.MODELS)]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _training_meta(config, release, name, {}),
            "spec": {"backoffLimit": remote.backoff_limit, "activeDeadlineSeconds": remote.active_deadline_seconds,
                     "ttlSecondsAfterFinished": remote.ttl_seconds_after_finished,
                     "template": _training_template(config, release, name, command, gpu=True)}}


def sweep_job(config: EnvironmentConfig, outputs: dict, release: Release, name: str, sweep_id: str) -> dict:
    """A sweep as one Indexed Job: completion index k trains (setting k // folds, fold k % folds) of
    `training.sweep` (the pod reads it from the mounted environment file and checks it still names
    `sweep_id`) and writes sweeps/<env>/<sweep id>/<k>.json. One failing index is retried on its own
    (backoffLimitPerIndex) and does not fail the others (maxFailedIndexes)."""
    spec = config.training.sweep
    assert spec is not None, "sweep_job needs training.sweep"
    remote = config.workloads.remote_training
    store = StoreLayout.of(config, artifact_bucket(config, outputs))
    command = ["toolkit", "sweep-item", "--env", config.name, "--sweep", sweep_id,
               "--data", store.dataset(config.training.dataset.rsplit('/', 1)[-1]), "--results", store.area_url(Area.SWEEPS)]
    labels = {KUEUE_QUEUE_LABEL: spec.queue_name} if spec.queue_name else {}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _training_meta(config, release, name, labels),
            "spec": {"completionMode": "Indexed", "completions": spec.trial_count() * spec.folds, "parallelism": spec.parallelism,
                     "backoffLimitPerIndex": spec.backoff_limit_per_index, "maxFailedIndexes": spec.max_failed_indexes,
                     "activeDeadlineSeconds": remote.active_deadline_seconds,
                     "ttlSecondsAfterFinished": remote.ttl_seconds_after_finished,
                     "template": _training_template(config, release, name, command, gpu=spec.gpu)}}


KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # a Job opts into Kueue's admission with its LocalQueue's name


def _training_meta(config: EnvironmentConfig, release: Release, name: str, labels: dict) -> dict:
    meta = object_meta(config, name, TRAINING, config.workloads.namespace,
                       {MODEL_VERSION_ANNOTATION: release.model_version, IMAGE_ANNOTATION: release.image})
    meta["labels"].update(labels)
    return meta


def _training_template(config: EnvironmentConfig, release: Release, name: str, command: list[str], gpu: bool) -> dict:
    """The pod of a training Job: the training ServiceAccount, the environment file mounted, the
    result in the termination message; on the first GPU pool with its GPUs when `gpu` (and there is
    one), else on the system pool."""
    remote = config.workloads.remote_training
    gpu_pool = config.gpu_pools()[0] if config.gpu_pools() and gpu else None
    pod_spec = {
        "serviceAccountName": TRAINING, "automountServiceAccountToken": False, "restartPolicy": "Never",
        "securityContext": pod_security(),
        "containers": [{
            "name": "train", "image": release.image, "imagePullPolicy": "Always", "command": command,
            "env": [{"name": "TOOLKIT_ROOT", "value": "/etc/toolkit"}, {"name": "AWS_REGION", "value": config.aws.region},
                    {"name": RESULT_FILE_ENV, "value": "/dev/termination-log"}],
            # `toolkit train` writes its result (version, device) there; the API server returns it in the pod's status
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "FallbackToLogsOnError",
            "resources": resource_requirements(remote.resources, gpus=remote.gpus if gpu_pool else 0),
            "securityContext": restricted_container_security(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                             {"name": "environment", "mountPath": "/etc/toolkit/environments", "readOnly": True}],
        }],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                    {"name": "environment", "configMap": {"name": "toolkit-environment"}}],
    }
    if gpu_pool:
        pod_spec["nodeSelector"] = dict(gpu_pool.labels)
        pod_spec["tolerations"] = [{"key": t.key, "operator": "Equal", "value": t.value, "effect": t.effect} for t in gpu_pool.taints]
    elif _system_pool(config).labels:
        pod_spec["nodeSelector"] = dict(_system_pool(config).labels)
    return {"metadata": {"labels": object_labels(config, TRAINING, {"job-name": name})}, "spec": pod_spec}


def artifact_bucket(config: EnvironmentConfig, outputs: dict) -> str:
    return outputs.get(Output.BUCKET) or config.artifact_store.bucket


def serving_manifests(config: EnvironmentConfig, outputs: dict, release: Release, public_keys: str | None = None) -> list[dict]:
    """What `toolkit deploy` applies (and prunes against), in apply order. `outputs`: the stack's
    (IRSA role ARNs, bucket); a cluster that is not the environment's EKS may have none."""
    objects = [namespace(config),
               service_account(config, SERVING, outputs.get(Output.SERVING_ROLE_ARN)),
               service_account(config, TRAINING, outputs.get(Output.TRAINING_ROLE_ARN)),
               serving_config_map(config, public_keys), deployment(config, release), service(config),
               pod_disruption_budget(config)]
    if config.serving.autoscaling.enabled:
        objects.append(horizontal_pod_autoscaler(config))
    if config.gpu_pools():
        objects.append(device_plugin_daemonset(config))
    objects += retrain_controller_manifests(config, outputs, release)
    objects += network_policies(config)
    objects += observability.observability_manifests(config)
    return [in_set(obj, "platform") for obj in objects]


def training_manifests(config: EnvironmentConfig, outputs: dict, release: Release, name: str, environment_yaml: str,
                       command: list[str] | None = None, job: dict | None = None) -> list[dict]:
    """The training Job (or `job`, e.g. a sweep's) and what it needs: its namespace and
    ServiceAccount (the same objects `deploy` applies, so either command may run first) and the
    environment file."""
    needed = [in_set(namespace(config), "platform"),
              in_set(service_account(config, TRAINING, outputs.get(Output.TRAINING_ROLE_ARN)), "platform")]
    job = job or training_job(config, outputs, release, name, command)
    return needed + [in_set(obj, "training") for obj in (environment_config_map(config, environment_yaml), job)]


def to_yaml(objects: list[dict]) -> str:
    """YAML documents; multi-line strings (PEM keys, files in ConfigMaps) as literal blocks, as a person writes them."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return "".join("---\n" + yaml.dump(obj, Dumper=Dumper, sort_keys=False) for obj in objects)
