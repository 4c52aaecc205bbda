"""Where a workload command acts: the Kubernetes cluster of an environment (EKS from the stack
outputs, or any cluster through a kubeconfig context) or, for an environment on the AWS emulator,
the local Docker runtime."""

from __future__ import annotations

from dataclasses import dataclass

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.paths import Output, stack_name
from toolkit.terraform.adapter import TerraformError
from toolkit.terraform.outputs import stack_outputs
from toolkit.workloads.kube import Kube


@dataclass
class Target:
    kube: Kube | None  # None: the local Docker runtime
    outputs: dict

    @property
    def local(self) -> bool:
        return self.kube is None


def placeholder_outputs(env: str) -> dict:
    """Shown in `toolkit render` when the stack is not deployed yet, so the YAML can still be reviewed."""
    return {key: f"<{key} from the {stack_name(env)} stack outputs>" for key in Output}


def outputs_for(ctx: Context, required: bool = True) -> dict:
    try:
        return stack_outputs(ctx)
    except TerraformError:
        if required:
            raise
        return placeholder_outputs(ctx.env)


def outputs_from_cluster(kube: Kube, ctx: Context) -> dict:
    """What a kubeconfig cluster needs in place of the stack outputs: the IRSA roles its ServiceAccounts
    already carry (kept, never dropped by a deploy; none on a cluster that is not EKS) and the bucket
    the environment file names. No Terraform, no AWS stack."""
    from toolkit.workloads.manifests import IRSA_ANNOTATION, SERVING, TRAINING

    outputs = {Output.BUCKET: ctx.config.artifact_store.bucket}
    for name, key in ((SERVING, Output.SERVING_ROLE_ARN), (TRAINING, Output.TRAINING_ROLE_ARN)):
        live = kube.get("ServiceAccount", name, ctx.config.workloads.namespace) or {}
        role = (live.get("metadata", {}).get("annotations") or {}).get(IRSA_ANNOTATION)
        if role:
            outputs[key] = role
    return outputs


def resolve_target(ctx: Context, kubeconfig: str | None = None, context: str | None = None) -> Target:
    if kubeconfig or context:
        from toolkit.workloads.eks_auth import kubeconfig_api_client

        kube = Kube(kubeconfig_api_client(kubeconfig, context))
        return Target(kube, outputs_from_cluster(kube, ctx))
    if ctx.emulated:
        return Target(None, {})  # the emulated EKS has no API server: run on the local Docker engine
    outputs = outputs_for(ctx)
    from toolkit.workloads.eks_auth import cluster_access, eks_api_client

    api = eks_api_client(ctx.config, *cluster_access(ctx.config, outputs))
    return Target(Kube(api), outputs)


def environment_yaml(ctx: Context) -> str:
    """The environment file as written (mounted into training Jobs)."""
    try:
        return ctx.paths.environment_file(ctx.env).read_text()
    except OSError as exc:
        raise ToolkitError(f"cannot read the environment file of {ctx.env}: {exc}") from None
