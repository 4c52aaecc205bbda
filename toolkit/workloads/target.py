"""Where a workload command acts: the Kubernetes cluster of an environment (EKS from the stack
outputs, or any cluster through a kubeconfig context) or, for an environment on the AWS emulator,
the local Docker runtime. Also which release (image by digest) it deploys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import BadInputError, ToolkitError
from toolkit.workloads.manifests import Release

# Shown in `toolkit render` when the stack is not deployed yet, so the YAML can still be reviewed.
PLACEHOLDER_OUTPUTS = {key: f"<{key} from the platform-{{env}} stack outputs>"
                       for key in ("serving_role_arn", "training_role_arn", "bucket", "cluster_name", "cluster_endpoint",
                                   "cluster_ca", "registry_url")}


@dataclass
class Target:
    kube: object | None  # toolkit.workloads.kube.Kube, or None for the local Docker runtime
    outputs: dict

    @property
    def local(self) -> bool:
        return self.kube is None


def outputs_for(env: str, root: Path, required: bool = True) -> dict:
    from toolkit.infra_outputs import stack_outputs
    from toolkit.terraform import TerraformError

    try:
        return stack_outputs(env, root)
    except TerraformError:
        if required:
            raise
        return {k: v.replace("{env}", env) for k, v in PLACEHOLDER_OUTPUTS.items()}


def resolve_target(config, root: Path, kubeconfig: str | None = None, context: str | None = None) -> Target:
    from toolkit.workloads.kube import Kube

    if kubeconfig or context:
        from toolkit.workloads.eks_auth import kubeconfig_api_client

        return Target(Kube(kubeconfig_api_client(kubeconfig, context)), outputs_for(config.name, root))
    if config.aws.endpoint_url:
        return Target(None, {})  # the emulated EKS has no API server: run on the local Docker engine
    outputs = outputs_for(config.name, root)
    from toolkit.workloads.eks_auth import cluster_access, eks_api_client

    api = eks_api_client(config, *cluster_access(config, outputs))
    return Target(Kube(api), outputs)


# ---------------------------------------------------------------- releases


def _last_push_file(root: Path, env: str) -> Path:
    return root / ".local" / f"last-push-{env}.json"


def save_last_push(root: Path, env: str, release: Release, training_image: str | None = None) -> None:
    path = _last_push_file(root, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"image": release.image, "model_version": release.model_version, "training_image": training_image}))


def training_release(root: Path, env: str) -> Release:
    """The training image of the last `toolkit push --env ENV` (what the GPU Job runs)."""
    path = _last_push_file(root, env)
    image = json.loads(path.read_text()).get("training_image") if path.exists() else None
    if not image:
        raise BadInputError(f"no training image pushed for {env} yet: run `make build push ENV={env}` first.")
    return Release(image, "training")


def release_for(root: Path, env: str, image: str | None, model_version: str | None = None) -> Release:
    """--image REF (pinned by digest) or the last `toolkit push --env ENV`."""
    if image:
        return Release(image, model_version or "unknown")
    path = _last_push_file(root, env)
    if not path.exists():
        raise BadInputError(f"no image pushed for {env} yet: run `make release ENV={env}` or pass --image <registry>/<repo>@sha256:<digest>.")
    data = json.loads(path.read_text())
    return Release(data["image"], model_version or data["model_version"])


def environment_yaml(config, root: Path) -> str:
    from toolkit.config import environment_path

    try:
        return environment_path(config.name, root).read_text()
    except OSError as exc:
        raise ToolkitError(f"cannot read the environment file of {config.name}: {exc}") from None
