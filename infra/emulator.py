"""Everything a stack does differently when its AWS is an emulator (the local environment on moto),
in one place, so the constructs in modules/ never know about it."""

from __future__ import annotations

import jsii
from cdktf import IAspect, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.eks_node_group import EksNodeGroup
from cdktf_cdktf_provider_aws.launch_template import LaunchTemplate
from cdktf_cdktf_provider_aws.prometheus_workspace import PrometheusWorkspace
from cdktf_cdktf_provider_aws.provider import AwsProviderEndpoints
from cdktf_cdktf_provider_aws.sqs_queue import SqsQueue
from constructs import IConstruct

from toolkit.aws import EMULATOR_ACCESS_KEY, EMULATOR_SECRET_KEY

# Every AWS API the stack (and its backend) calls; all of them go to `aws.endpoint_url` when set.
ENDPOINT_SERVICES = ("ec2", "eks", "ecr", "iam", "kms", "s3", "sts", "cloudwatchlogs", "dynamodb", "amp", "sns", "secretsmanager", "sqs")
# Fake keys for an emulator endpoint; real AWS uses the normal credential chain.
CREDENTIALS = {"access_key": EMULATOR_ACCESS_KEY, "secret_key": EMULATOR_SECRET_KEY}
# Attributes moto invents or drops, per resource type: without ignoring them a second deploy would
# plan changes that real AWS never shows. Moto adds a `remote_access` block (ec2SshKey "eksKeypair")
# to every node group and a tag specification to launch templates, and does not keep an AMP
# workspace's `kms_key_arn` (so it would be replaced on every deploy).
# moto writes a dead-letter queue's ARN in the redrive policy with its own default region (us-east-1).
INVENTED_ATTRIBUTES = {EksNodeGroup: ["remote_access"], LaunchTemplate: ["tag_specifications"], PrometheusWorkspace: ["kms_key_arn"],
                       SqsQueue: ["redrive_policy"]}


def provider_settings(url: str) -> dict:
    """AwsProvider arguments that send every call to the emulator (no account lookup: no account guard)."""
    return dict(**CREDENTIALS, skip_credentials_validation=True, skip_requesting_account_id=True,
                skip_metadata_api_check="true", s3_use_path_style=True,
                endpoints=[AwsProviderEndpoints(**{service: url for service in ENDPOINT_SERVICES})])


def backend_overrides(url: str) -> dict:
    """S3 backend settings for the emulator's state bucket."""
    return {"endpoints": {"s3": url, "sts": url, "iam": url}, "use_path_style": True, "skip_credentials_validation": True,
            "skip_requesting_account_id": True, "skip_metadata_api_check": True, **CREDENTIALS}


@jsii.implements(IAspect)
class IgnoreInventedAttributes:
    """Adds the attributes the emulator invents or drops to each resource's `lifecycle.ignore_changes`."""

    def visit(self, node: IConstruct) -> None:
        for kind, attributes in INVENTED_ATTRIBUTES.items():
            if isinstance(node, kind):
                lifecycle = node.lifecycle
                ignored = list(lifecycle.ignore_changes or []) if lifecycle else []
                node.lifecycle = TerraformResourceLifecycle(
                    ignore_changes=[*ignored, *(a for a in attributes if a not in ignored)],
                    prevent_destroy=lifecycle.prevent_destroy if lifecycle else None,
                )


# The emulator serves plain HTTP and enforces bucket policies: a TLS-only policy (aws:SecureTransport)
# would refuse every request the toolkit and the server make to the artifact store, and it does
# not evaluate the principal conditions the promotion prefix's writers are named by. An emulated
# environment promotes from nothing, so its store has no bucket policy at all.
STORE_SETTINGS = {"deny_insecure_transport": False, "only_writers": None}
