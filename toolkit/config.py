"""Environment configuration: `environments/<env>.yaml` validated into typed objects.

This module is the single source of truth: the CDKTF stacks and every toolkit command
read an `EnvironmentConfig` from `load_environment`, never the YAML directly.
Unknown keys are errors; a bad file raises `ConfigError` naming the file, the key path,
the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
import reprlib
import types
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from toolkit.errors import ConfigError
from toolkit.paths import ENVIRONMENTS_DIR, project_root

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,39}$", description="lowercase letters, digits and '-'")]
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")]

GPU_AMI_TYPES = frozenset({"AL2_x86_64_GPU", "AL2023_x86_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA"})
# EC2 families with NVIDIA GPUs that EKS GPU AMIs support.
GPU_INSTANCE_FAMILIES = frozenset({"g4dn", "g5", "g6", "g6e", "gr6", "p3", "p3dn", "p4d", "p4de", "p5", "p5e"})
GPU_TAINT_KEY = "nvidia.com/gpu"


class _Section(BaseModel):
    """Every section rejects unknown keys and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)  # strict: no `true` for a number, no "yes" for a boolean


class AwsConfig(_Section):
    region: str = Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", description="AWS region, e.g. eu-west-1")
    account_id: str = Field(pattern=r"^[0-9]{12}$", description="12-digit AWS account id")
    endpoint_url: str | None = Field(
        None, pattern=r"^https?://", description="AWS API endpoint override (the local moto server); unset for real AWS"
    )


class NetworkConfig(_Section):
    vpc_cidr: str = Field("10.0.0.0/16", description="VPC CIDR; split into one public and one private subnet per AZ")
    availability_zones: list[str] = Field(min_length=2, max_length=6, description="AZ names, at least two")
    nat_gateways: Literal["single", "one_per_az"] = Field(
        "single", description="one shared NAT gateway, or one per AZ (survives an AZ outage; costs more)"
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        network = ipaddress.ip_network(value)
        if network.prefixlen > 20:
            raise ValueError(f"vpc_cidr must be /20 or larger to hold the subnets, got /{network.prefixlen}")
        return value


class StateConfig(_Section):
    """Terraform remote state: an S3 bucket per environment, locked with S3 lockfiles."""

    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    key: str = Field("platform/terraform.tfstate", min_length=1)


IamArn = Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$",
                               description="an IAM role or user ARN")]
GitHubRepository = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9_.-]{1,100}$", description="OWNER/NAME")]


class SigningConfig(_Section):
    """Model signing (toolkit/ml/signing.py): artifacts are signed at training time with the
    environment's private key and verified against its public key wherever they are loaded."""

    public_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_./-]+\.pub$",
                                   description="the environment's public key (PEM), relative to the project root, e.g. "
                                               "keys/prod.pub: written by `toolkit signing-key --env ENV` and committed; "
                                               "unset on an emulated environment (its key pair is generated under .local/signing/)")


class CiConfig(_Section):
    """Delivery from GitHub Actions (modules/ci_identity.py): GitHub's OIDC provider and this
    environment's `plan` role (pull requests), `deploy` role (the GitHub environment of the same name)
    and `promote` role (the GitHub environment `<env>-promotion`, where promotion_from is set)."""

    github_repository: GitHubRepository = Field(description="the repository whose workflows assume the roles")
    subject_ref: str | None = Field(None, pattern=r"^refs/(heads|tags)/[A-Za-z0-9._/-]+$",
                                    description="trust the deploy and promote roles only from this ref (e.g. refs/heads/main); "
                                                "needs the repository's OIDC subject template to include `ref` (README)")
    create_oidc_provider: bool = Field(True, description="create GitHub's OIDC provider; there is one per AWS account, so every "
                                                         "other environment in the same account sets false and looks it up")


class ClusterConfig(_Section):
    name: Name
    kubernetes_version: Literal["1.29", "1.30", "1.31", "1.32"]
    endpoint_public_access: bool
    endpoint_private_access: bool = True
    public_access_cidrs: list[str] = Field(default_factory=list)
    log_types: list[Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]] = Field(
        default_factory=lambda: ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    )
    access_entries: bool = Field(True, description="grant cluster access with EKS access entries (authentication mode API): "
                                                   "the CI deploy role and admin_principals; moto does not emulate them")
    admin_principals: list[IamArn] = Field(default_factory=list, description="IAM roles or users with cluster-admin; the "
                                                                           "creator has no implicit admin rights")

    @field_validator("public_access_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr)  # ValueError names the bad CIDR
        return value

    @model_validator(mode="after")
    def _some_endpoint(self) -> ClusterConfig:
        if not (self.endpoint_public_access or self.endpoint_private_access):
            raise ValueError("at least one of endpoint_public_access and endpoint_private_access must be true")
        return self


class RegistryConfig(_Section):
    name: str = Field(pattern=r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
    tag_immutability: bool = True
    scan_on_push: bool = True
    keep_releases: int = Field(30, ge=1, le=1000, description="tagged images kept by the lifecycle policy")
    untagged_expiry_days: int = Field(7, ge=1, le=365)
    endpoint: str | None = Field(
        None, pattern=r"^[a-z0-9.-]+:[0-9]+$",
        description="host:port of an OCI registry standing in for ECR (local); unset: the ECR endpoint",
    )


class Taint(_Section):
    key: str = Field(min_length=1)
    value: str = ""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class NodePoolConfig(_Section):
    name: Name
    instance_types: list[str] = Field(min_length=1)
    min_size: int = Field(ge=0)
    max_size: int = Field(ge=1)
    desired_size: int = Field(ge=0)
    gpu: bool = False
    ami_type: Literal[
        "AL2_x86_64", "AL2_x86_64_GPU", "AL2023_x86_64_STANDARD", "AL2023_x86_64_NVIDIA",
        "BOTTLEROCKET_x86_64", "BOTTLEROCKET_x86_64_NVIDIA",
    ] = "AL2023_x86_64_STANDARD"
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    disk_size_gb: int = Field(50, ge=20, le=16384)
    labels: dict[str, str] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)

    @field_validator("instance_types")
    @classmethod
    def _instance_types(cls, value: list[str]) -> list[str]:
        for itype in value:
            if not re.fullmatch(r"[a-z][a-z0-9-]*\.[0-9a-z]+", itype):
                raise ValueError(f"'{itype}' is not an EC2 instance type like m6i.large")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NodePoolConfig:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError(
                f"sizes must satisfy min_size <= desired_size <= max_size, got {self.min_size} <= "
                f"{self.desired_size} <= {self.max_size}"
            )
        if self.gpu:
            if self.ami_type not in GPU_AMI_TYPES:
                raise ValueError(f"a GPU pool needs a GPU AMI type, one of {sorted(GPU_AMI_TYPES)}; got {self.ami_type}")
            non_gpu = [t for t in self.instance_types if t.split(".")[0] not in GPU_INSTANCE_FAMILIES]
            if non_gpu:
                raise ValueError(
                    f"a GPU pool needs GPU instance types (families {sorted(GPU_INSTANCE_FAMILIES)}); got {non_gpu}"
                )
            if not any(t.key == GPU_TAINT_KEY and t.effect == "NoSchedule" for t in self.taints):
                raise ValueError(
                    f"a GPU pool must carry the taint {GPU_TAINT_KEY}=true:NoSchedule so only GPU workloads land on it"
                )
        elif self.ami_type in GPU_AMI_TYPES:
            raise ValueError(f"ami_type {self.ami_type} is a GPU AMI but gpu is false")
        return self


class ArtifactStoreConfig(_Section):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", description="S3 bucket name")
    models_prefix: str = Field("models/", pattern=r"^[a-z0-9][a-z0-9/_-]*/$")
    datasets_prefix: str = Field("datasets/", pattern=r"^[a-z0-9][a-z0-9/_-]*/$")
    noncurrent_version_expiry_days: int = Field(90, ge=1)


_TARGET_RE = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$")


class SweepSpace(_Section):
    """The values a sweep tries for each hyperparameter; a key left out keeps training's value."""

    hidden_layers: list[list[Annotated[int, Field(ge=1, le=4096)]]] | None = Field(None, min_length=1, description="e.g. [[16], [32, 16]]")
    activation: list[Literal["relu", "tanh", "sigmoid"]] | None = Field(None, min_length=1)
    learning_rate: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(None, min_length=1)
    l2: list[Annotated[float, Field(ge=0)]] | None = Field(None, min_length=1)
    batch_size: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1)
    class_weight: list[Literal["none", "balanced"]] | None = Field(None, min_length=1)

    def axes(self) -> dict[str, list]:
        """The swept hyperparameters and their values, in a fixed order."""
        return {name: list(values) for name, values in self.model_dump().items() if values is not None}

    def size(self) -> int:
        return math.prod(len(values) for values in self.axes().values())


class SweepConfig(_Section):
    """`toolkit sweep`: settings tried with cross-validation, locally in processes or on the cluster
    as one Indexed Job (toolkit/ml/sweep.py)."""

    method: Literal["grid", "random"] = Field("grid", description="grid: every combination; random: `trials` of them, drawn with `seed`")
    space: SweepSpace
    trials: int | None = Field(None, ge=1, description="random: how many settings (at most the grid's size); grid: unset")
    seed: int = Field(0, ge=0, description="the random draw of settings")
    folds: int = Field(3, ge=2, le=20, description="cross-validation folds per setting, over the rows outside the test split")
    metric: Literal["auto", "accuracy", "roc_auc", "f1", "r2", "rmse"] = Field(
        "auto", description="what ranks the settings (mean over folds); auto: accuracy for classes, r2 for regression")
    parallelism: int = Field(2, ge=1, le=256, description="--remote: pods running at once")
    gpu: bool = Field(True, description="--remote: run on the GPU pool; false: on the system pool, with no GPU")
    backoff_limit_per_index: int = Field(1, ge=0, le=10, description="--remote: retries of one failing trial's pod")
    max_failed_indexes: int = Field(2, ge=0, description="--remote: the Job fails once more trials than this have failed")
    queue_name: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=63,
                                   description="--remote: Kueue LocalQueue (label kueue.x-k8s.io/queue-name), on clusters running Kueue")

    @model_validator(mode="after")
    def _trials_fit_the_space(self) -> SweepConfig:
        size = self.space.size()
        if not self.space.axes():
            raise ValueError("space must list values for at least one of " + ", ".join(SweepSpace.model_fields))
        if self.method == "grid" and self.trials is not None:
            raise ValueError(f"trials is for method random; a grid tries every combination ({size} here)")
        if self.method == "random" and self.trials is None:
            raise ValueError(f"method random needs trials: how many of the grid's {size} combinations to try")
        if self.method == "random" and self.trials > size:
            raise ValueError(f"trials {self.trials} is more than the grid holds ({size} combinations of {', '.join(self.space.axes())})")
        return self

    def trial_count(self) -> int:
        return self.space.size() if self.method == "grid" else int(self.trials or 0)


class TrainingConfig(_Section):
    dataset: str = Field(description="CSV path, relative to the repository root")
    label: str = Field(min_length=1, description="label column")
    target: str | None = Field(
        None, description="derive a binary target from the label column, e.g. 'num > 0'; unset: use label values as classes"
    )
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="unset: detected")
    categorical: list[str] = Field(default_factory=list)
    drop_columns: list[str] = Field(default_factory=list, description="id-like columns to ignore")
    hidden_layers: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [32])
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: regression for a numeric label that looks continuous (or loss mse), classification otherwise")
    loss: Literal["auto", "binary_cross_entropy", "categorical_cross_entropy", "mse"] = Field(
        "auto", description="auto: binary cross-entropy for two classes, categorical for more, mean squared error for regression")
    class_weight: Literal["none", "balanced"] = Field(
        "none", description="balanced: weigh each class's samples by n / (classes · its count), so rare classes count as much")
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    learning_rate: float = Field(0.001, gt=0, le=1)
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(200, ge=1)
    patience: int | None = Field(20, ge=1, description="early-stopping patience in epochs; unset: no early stopping")
    l2: float = Field(0.0, ge=0)
    seed: int = Field(0, ge=0)
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    max_categories: int = Field(1000, ge=2, le=100_000, description="a categorical column with more distinct values is refused")
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    sweep: SweepConfig | None = Field(None, description="hyperparameters `toolkit sweep` tries (unset: no sweep)")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="auto: the GPU when CuPy finds a usable one (the GPU training image), else the CPU; "
                            "gpu: refuse to train without one")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        if value is not None and not _TARGET_RE.match(value):
            raise ValueError("target must look like '<column> <op> <number>' with op one of > >= < <= == !=")
        return value

    @model_validator(mode="after")
    def _target_uses_label(self) -> TrainingConfig:
        if self.target is not None and self.target_rule()[0] != self.label:
            raise ValueError(f"target '{self.target}' must test the label column '{self.label}'")
        if self.task == "regression" and self.loss not in ("auto", "mse"):
            raise ValueError(f"loss {self.loss} is a classification loss; task regression takes loss mse (or auto)")
        if self.task == "classification" and self.loss == "mse":
            raise ValueError("loss mse is for regression; task classification takes a cross-entropy (or auto)")
        if self.target is not None and (self.task == "regression" or self.loss == "mse"):
            raise ValueError(f"target '{self.target}' makes two classes of the label; regression predicts the label itself")
        return self

    def dataset_task(self) -> str:
        """What to make of the label: "regression", "classification", or "auto" (decided by the data)."""
        if self.task != "auto":
            return self.task
        if self.loss == "mse":
            return "regression"
        return "classification" if self.loss != "auto" else "auto"

    def target_rule(self) -> tuple[str, str, float]:
        """(column, operator, threshold) of `target`; only valid when target is set."""
        rule = parse_target(self.target or "")
        assert rule, "target_rule() called without a valid target"
        return rule


def parse_target(expression: str) -> tuple[str, str, float] | None:
    """'num > 0' -> ('num', '>', 0.0); None when it is not of that form."""
    match = _TARGET_RE.match(expression)
    return (match.group(1), match.group(2), float(match.group(3))) if match else None


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity in cores: "2" → 2.0, "500m" → 0.5."""
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


class ResourceQuantities(_Section):
    cpu: Quantity
    memory: Quantity


class Resources(_Section):
    requests: ResourceQuantities
    limits: ResourceQuantities


class AutoscalingConfig(_Section):
    enabled: bool = True
    min_replicas: int = Field(2, ge=1)
    max_replicas: int = Field(6, ge=1)
    target_cpu_utilization: int = Field(70, ge=1, le=100)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})")
        return self


class ServingConfig(_Section):
    base_image: str = Field("python:3.11-slim", min_length=1, description="base of the serving image (Python 3.11)")
    replicas: int = Field(2, ge=1)
    port: int = Field(8080, ge=1024, le=65535)
    resources: Resources
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    max_batch_size: int = Field(256, ge=1, description="records per /v1/predict request")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="request body size limit")
    header_timeout_seconds: int = Field(10, ge=1, le=300, description="a connection whose request head is not complete by then is closed")
    body_timeout_seconds: int = Field(30, ge=1, le=3600, description="a connection whose request body is not complete this long after "
                                                                     "its head is closed (counted as status 408)")
    feedback_port: int | None = Field(None, ge=1024, le=65535, description="serve POST /v1/feedback on this port only (and nothing "
                                                                           "else there), so the predict port can be exposed without it")
    workers: int | None = Field(None, ge=1, le=64, description="server processes per replica (default: the CPU limit, rounded down, "
                                                               "at least 1)")

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, int(cpu_cores(self.resources.limits.cpu)))


class RemoteTrainingConfig(_Section):
    gpus: int = Field(1, ge=1, le=8, description="nvidia.com/gpu per training pod (on the first GPU pool)")
    resources: Resources = Field(default_factory=lambda: Resources(
        requests=ResourceQuantities(cpu="1", memory="2Gi"), limits=ResourceQuantities(cpu="4", memory="8Gi")))
    backoff_limit: int = Field(1, ge=0, le=10, description="pod retries before the Job fails")
    active_deadline_seconds: int = Field(3600, ge=60, description="the Job is stopped after this long")
    ttl_seconds_after_finished: int = Field(86400, ge=0, description="finished Jobs are garbage-collected after this")
    cuda_image: bool | None = Field(
        None, description="build the CUDA training image (training-gpu-<sha>: CuPy and the CUDA runtime libraries) and run the "
                          "GPU pool's Jobs in it; unset: yes where there is a GPU pool and AWS is not emulated")


class WorkloadsConfig(_Section):
    namespace: str = Field("ml-platform", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63,
                           description="namespace of the serving and training workloads (IRSA trusts this one)")
    rollout_timeout_seconds: int = Field(300, ge=10, le=3600, description="a rollout not done by then is rolled back")
    device_plugin_image: str = Field("nvcr.io/nvidia/k8s-device-plugin:v0.17.0", min_length=1,
                                     description="NVIDIA device plugin image (mirror it and pin a digest for production)")
    remote_training: RemoteTrainingConfig = Field(default_factory=RemoteTrainingConfig)
    image_admission: bool = Field(True, description="label the namespace for Sigstore's policy-controller, which then admits only "
                                                    "images signed by a trusted key (`toolkit render --admission`; README)")


class SnsSubscription(_Section):
    protocol: Literal["email", "https", "sqs", "lambda"]
    endpoint: str = Field(min_length=1, description="an address, URL or ARN for the protocol")


class AmpConfig(_Section):
    """Amazon Managed Service for Prometheus: the environment's metrics and alerts in the cloud."""

    enabled: bool = Field(True, description="provision the AMP workspace, its rules and the alert topic")
    alert_manager_definition: bool = Field(True, description="route alerts to the SNS topic (not emulated by moto)")
    managed_scraper: bool = Field(True, description="an AMP managed scraper for the EKS cluster (not emulated by moto)")
    log_retention_days: int = Field(365, ge=1, le=3653)
    sns_subscriptions: list[SnsSubscription] = Field(default_factory=list, description="who is told when an alert fires")


class LocalMonitoringConfig(_Section):
    """The local Prometheus, Alertmanager and alert receiver (`toolkit local up`), on 127.0.0.1."""

    prometheus_port: int = Field(9090, ge=1024, le=65535)
    alertmanager_port: int = Field(9093, ge=1024, le=65535)
    receiver_port: int = Field(9095, ge=1024, le=65535)
    scrape_interval_seconds: int = Field(15, ge=1, le=300)
    group_wait_seconds: int = Field(30, ge=0, le=600, description="Alertmanager's wait before a new group's first notification")


class MonitoringConfig(_Section):
    """Thresholds of the alert rules (toolkit/monitoring/rules.py) and where they are evaluated."""

    slo_p99_ms: int = Field(250, ge=1, le=60_000, description="serving SLO: p99 latency of /v1/predict")
    max_error_ratio: float = Field(0.02, gt=0, lt=1, description="share of /v1/predict answers that may be 5xx")
    window_seconds: int = Field(300, ge=5, le=3600, description="rate window of the SLO expressions")
    for_seconds: int = Field(300, ge=0, le=3600, description="how long an SLO breach lasts before it alerts")
    traffic_lost_minutes: int = Field(10, ge=1, description="no predictions for this long while serving is up alerts")
    restarts: int = Field(3, ge=1, description="more server restarts than this within 15 minutes alert")
    not_ready_minutes: int = Field(5, ge=1, description="a serving target down this long alerts")
    max_class_share_shift: float = Field(0.2, gt=0, lt=1,
                                         description="allowed move of a predicted class's share away from the test split's")
    class_share_window_minutes: int = Field(30, ge=1)
    class_share_min_predictions: int = Field(100, ge=1, description="predictions in the window before class shares are judged")
    pending_minutes: int = Field(15, ge=1, description="a training pod pending (unschedulable) this long alerts")
    max_model_age_days: int = Field(30, ge=1, description="a served model older than this alerts (retrain)")
    evaluation_interval_seconds: int = Field(30, ge=1, le=300)
    prometheus_operator: bool = Field(False, description="render and apply a ServiceMonitor and PrometheusRule (kube-prometheus-stack)")
    grafana_dashboard: bool = Field(True, description="render and apply the dashboard as a ConfigMap for the Grafana sidecar")
    dcgm_exporter_image: str = Field("nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04", min_length=1,
                                     description="NVIDIA DCGM exporter on the GPU pools (mirror it and pin a digest for production)")
    amp: AmpConfig = Field(default_factory=AmpConfig)
    local: LocalMonitoringConfig = Field(default_factory=LocalMonitoringConfig)


class RetrainConfig(_Section):
    """The champion/challenger gate of `toolkit retrain`."""

    tolerance: float = Field(0.01, ge=0, lt=1, description="a challenger may score this much below the champion and still win")
    quality_floor: float = Field(0.75, gt=0, le=1, description="a challenger below this accuracy on the test split is never released")
    r2_floor: float = Field(0.0, ge=-1, lt=1, description="a regressor: a challenger at or below this R² on the test split is never "
                                                          "released (0: no better than predicting the mean); it must also not be "
                                                          "more than `tolerance` (a share) worse than the champion's RMSE")
    holdout_fraction: float = Field(0.3, gt=0, lt=1, description="share of the trusted labellers' feedback (the newest) kept out of "
                                                                 "training to judge both")
    max_labeller_share: float = Field(0.2, gt=0, le=1, description="a labeller's rows are at most this share of the rows a challenger "
                                                                   "trains on (base training rows plus the feedback kept)")
    debounce_minutes: int = Field(30, ge=0, description="alerts within this long of a retraining start none again")
    github_repository: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$",
                                          description="forward retrain alerts to this repository's retrain.yml (repository_dispatch)")
    github_token_env: str = Field("GITHUB_TOKEN", pattern=r"^[A-Z][A-Z0-9_]*$",
                                  description="environment variable of the alert receiver holding the token for github_repository")


class FeedbackConfig(_Section):
    """The feedback loop: prediction log, ground truth, drift (toolkit/serve/), retraining behind a gate."""

    enabled: bool = True
    sample_rate: float = Field(1.0, ge=0, le=1, description="share of predictions written to the prediction log")
    queue_size: int = Field(50_000, ge=1, description="records the server buffers for the log (about 150 bytes each); beyond, "
                                                      "they are dropped and counted")
    batch_size: int = Field(10_000, ge=1, description="records per object in the artifact store at most (each PUT costs the "
                                                      "server about 2 ms of CPU: few large objects)")
    flush_seconds: float = Field(5.0, gt=0, le=3600, description="a partial batch is shipped after this long")
    drift_window: int = Field(1000, ge=10, description="the last this many records are compared with the training data")
    drift_min_records: int = Field(200, ge=1, description="records in the window before drift is judged")
    max_psi: float = Field(0.2, gt=0, description="population stability index above which inputs have drifted")
    drift_for_seconds: int = Field(600, ge=0, description="how long drift lasts before it alerts")
    accuracy_margin: float = Field(0.05, ge=0, lt=1, description="online accuracy this far below the test accuracy alerts")
    accuracy_window_minutes: int = Field(60, ge=1)
    min_labelled: int = Field(50, ge=1, description="labelled predictions in the window before accuracy is judged")
    label_memory: int = Field(100_000, ge=1, description="prediction ids each server remembers the label of (the first label stands; "
                                                         "a different one is a 409)")
    trusted_labellers: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]] = Field(
        default_factory=list, description="labellers whose newest feedback the gate judges challengers on (the others' only trains, capped)")
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)


class EnvironmentConfig(_Section):
    name: Name
    prevent_destroy: bool = Field(False, description="protect cluster, registry and bucket from terraform destroy")
    aws: AwsConfig
    state: StateConfig
    network: NetworkConfig
    cluster: ClusterConfig
    registry: RegistryConfig
    node_pools: list[NodePoolConfig] = Field(min_length=1)
    artifact_store: ArtifactStoreConfig
    training: TrainingConfig
    serving: ServingConfig
    workloads: WorkloadsConfig = Field(default_factory=WorkloadsConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    ci: CiConfig
    signing: SigningConfig = Field(default_factory=SigningConfig)
    promotion_from: Name | None = Field(None, description="deploy only image digests and models promoted from this environment "
                                                          "(`toolkit promote --from … --to ENV`)")

    @model_validator(mode="after")
    def _pools(self) -> EnvironmentConfig:
        names = [p.name for p in self.node_pools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"node pool names must be unique; repeated: {duplicates}")
        if all(p.gpu for p in self.node_pools):
            raise ValueError("at least one non-GPU node pool is needed for system workloads")
        foreign = [az for az in self.network.availability_zones if not az.startswith(self.aws.region)]
        if foreign:
            raise ValueError(f"network.availability_zones {foreign} are not in aws.region {self.aws.region}")
        return self

    def gpu_pools(self) -> list[NodePoolConfig]:
        return [p for p in self.node_pools if p.gpu]

    def cuda_training_image(self) -> bool:
        """Whether `toolkit build` makes the CUDA training image and the training Jobs run it."""
        wanted = self.workloads.remote_training.cuda_image
        return bool(self.gpu_pools()) and (wanted if wanted is not None else self.aws.endpoint_url is None)

    def ci_role_arn(self, kind: str) -> str:
        """The ARN of the CI role `kind` ("plan" or "deploy"; modules/ci_identity.py), known before it exists:
        what another environment's resource policies name."""
        return f"arn:aws:iam::{self.aws.account_id}:role/{self.ci_role_name(kind)}"

    def ci_role_name(self, kind: str) -> str:
        return f"{self.cluster.name}-ci-{kind}"

    def workload_role_name(self, workload: str) -> str:
        """The IRSA role of a workload ("training", "serving", "retrain-controller"; infra/stack.py)."""
        return f"{self.cluster.name}-{workload}"

    def workload_role_arn(self, workload: str) -> str:
        return f"arn:aws:iam::{self.aws.account_id}:role/{self.workload_role_name(workload)}"

    @property
    def signing_secret_name(self) -> str:
        """The Secrets Manager secret of the model-signing private key (modules/secret.py)."""
        return f"{self.cluster.name}-model-signing-key"

    @property
    def feedback_secret_name(self) -> str:
        """The Secrets Manager secret of the feedback loop's credentials: the prediction-id key and the
        labellers' token hashes (toolkit/feedback_auth.py; modules/secret.py)."""
        return f"{self.cluster.name}-feedback-credentials"


# ---------------------------------------------------------------- loading


def known_environments(root: Path | None = None) -> list[str]:
    directory = (root or project_root()) / ENVIRONMENTS_DIR
    return sorted(p.stem for p in directory.glob("*.yaml") if "." not in p.stem)  # not <env>.usage.yaml


def environment_path(env: str, root: Path | None = None) -> Path:
    root = root or project_root()
    known = known_environments(root)
    if env not in known:
        listing = ", ".join(known) if known else f"none (no *.yaml in {root / ENVIRONMENTS_DIR})"
        raise ConfigError(f"unknown environment '{env}'. Known environments: {listing}.")
    return root / ENVIRONMENTS_DIR / f"{env}.yaml"


def load_environment(env: str, root: Path | None = None) -> EnvironmentConfig:
    """Load and validate `environments/<env>.yaml`."""
    return load_config_file(environment_path(env, root))


def load_all_environments(root: Path | None = None) -> dict[str, EnvironmentConfig]:
    return {env: load_environment(env, root) for env in known_environments(root)}


def promotion_peers(config: EnvironmentConfig, root: Path | None = None) -> tuple[EnvironmentConfig | None, list[EnvironmentConfig]]:
    """(the environment `config` promotes from, the environments that promote from it): whose CI
    deploy role reads this one's registry and store, and whose this one's may read."""
    source = load_environment(config.promotion_from, root) if config.promotion_from else None
    targets = [c for c in load_all_environments(root).values() if c.promotion_from == config.name and c.name != config.name]
    return source, targets


# An environment file is a few hundred values; these bounds refuse a hostile one fast (a file of
# aliases that expands to billions of values, a huge or deeply nested document).
MAX_FILE_BYTES = 1 << 20
MAX_VALUES = 100_000


def load_config_file(path: Path) -> EnvironmentConfig:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"{path}: the file is over {MAX_FILE_BYTES // 1024} KiB; an environment file is a few KiB.")
        raw = _load_yaml(path.read_text(encoding="utf-8"), path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the file ({getattr(exc, 'strerror', None) or exc}).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}.") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}.")
    try:
        config = EnvironmentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    if config.name != path.stem:
        raise ConfigError(f"{path}: name: '{config.name}' must match the file name '{path.stem}'.")
    return config


def _load_yaml(text: str, path: Path) -> object:
    """yaml.safe_load, but the composed document is measured before any Python value is built:
    aliases reuse nodes, so a small file can stand for an exponential number of values."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            values = _expanded_size(node, {})
        except RecursionError:
            raise ConfigError(f"{path}: the document is nested too deeply to be an environment file.") from None
        if values > MAX_VALUES:
            raise ConfigError(f"{path}: the document expands to more than {MAX_VALUES:,} values (through YAML aliases); "
                              "an environment file is a few hundred.")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    """How many values the node stands for once aliases are expanded (memoized: linear in the node graph)."""
    known = seen.get(id(node))
    if known is not None:
        return known
    seen[id(node)] = MAX_VALUES + 1  # a node reached again inside itself (a recursive alias) is unbounded
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(key, seen) + _expanded_size(value, seen) for key, value in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(item, seen) for item in node.value)
    else:
        size = 1
    seen[id(node)] = min(size, MAX_VALUES + 1)
    return seen[id(node)]


# ---------------------------------------------------------------- error messages

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 80, 80, 6, 6, 3


def format_validation_error(path: Path, exc: ValidationError, root: type[BaseModel] | None = None) -> str:
    """One line per problem, each with its key path; `root`: the file's model (default: an environment file)."""
    problems = [_describe(error, root or EnvironmentConfig) for error in exc.errors()]
    noun = "problem" if len(problems) == 1 else "problems"
    return f"{path}: {len(problems)} configuration {noun}:\n" + "\n".join(f"  - {p}" for p in problems)


def _describe(error: dict, root: type[BaseModel]) -> str:
    loc = tuple(error["loc"])
    key_path = _key_path(loc) or "(top level)"
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], root)
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        did_you_mean = f" Did you mean '{hint[0]}'?" if hint else ""
        return f"{key_path}: unknown key (value {_short(value)}). Allowed keys here: {', '.join(allowed)}.{did_you_mean}"
    if error["type"] == "missing":
        return f"{key_path}: required key is missing."
    message = error["msg"].removeprefix("Value error, ")
    return f"{key_path}: {message} (got {_short(value)})."


def _key_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: object) -> str:
    text = _REPR.repr(value)  # bounded: never a full repr of a large value
    return text if len(text) <= 80 else text[:77] + "..."


def _allowed_keys(loc: tuple, root: type[BaseModel]) -> list[str]:
    """Field names of the model found by walking `loc` down from `root`."""
    model: object = root
    for part in loc:
        model = _unwrap(model)
        if isinstance(part, str) and isinstance(model, type) and issubclass(model, BaseModel):
            model = model.model_fields[part].annotation
        # list indices and dict keys: _unwrap already stepped into the item type
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []


def _unwrap(annotation: object) -> object:
    """list[X] / dict[str, X] / X | None / Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin is Annotated:
            annotation = args[0]
        elif origin in (list, dict, typing.Union, types.UnionType) and args:
            annotation = args[-1]
        else:
            return annotation
