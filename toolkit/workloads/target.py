"""What a workload needs to know of where it runs: the stack outputs (or, for a kubeconfig cluster,
what stands in for them) and the environment file a training Job mounts. Which runtime an
environment gets is decided in toolkit.delivery.runtime."""

from __future__ import annotations

from toolkit.context import Context
from toolkit.errors import ToolkitError
from toolkit.paths import Output, stack_name
from toolkit.terraform.adapter import TerraformError
from toolkit.terraform.outputs import stack_outputs
from toolkit.workloads.kube import Kube


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


def environment_yaml(ctx: Context) -> str:
    """The environment file as written (mounted into training Jobs)."""
    try:
        return ctx.paths.environment_file(ctx.env).read_text()
    except OSError as exc:
        raise ToolkitError(f"cannot read the environment file of {ctx.env}: {exc}") from None
