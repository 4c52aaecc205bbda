"""EKS managed node groups from config: launch template with IMDSv2 and an encrypted root volume."""

from __future__ import annotations

from cdktf import TerraformResourceLifecycle, Token
from cdktf_cdktf_provider_aws.eks_node_group import (
    EksNodeGroup,
    EksNodeGroupLaunchTemplate,
    EksNodeGroupScalingConfig,
    EksNodeGroupTaint,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.launch_template import (
    LaunchTemplate,
    LaunchTemplateBlockDeviceMappings,
    LaunchTemplateBlockDeviceMappingsEbs,
    LaunchTemplateMetadataOptions,
    LaunchTemplateTagSpecifications,
)
from constructs import Construct

from modules.iam import assume_role_policy, managed_policy
from toolkit.config import NodePoolConfig

NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
# Kubernetes taint effects as the EKS API spells them.
TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


class NodeRole(Construct):
    """The IAM role every node group's instances run as (shared by the pools of a cluster)."""

    def __init__(self, scope: Construct, id: str, *, cluster_name: str) -> None:
        super().__init__(scope, id)
        self.role = IamRole(self, "role", name=f"{cluster_name}-nodes", assume_role_policy=assume_role_policy("ec2.amazonaws.com"))
        self.attachments = [
            IamRolePolicyAttachment(self, f"policy-{i}", role=self.role.name, policy_arn=managed_policy(name))
            for i, name in enumerate(NODE_POLICIES)
        ]


class NodePool(Construct):
    """One managed node group.

    Args:
        name: node group and launch template name.
        config: instance types, sizes, AMI type, capacity type, disk, labels and taints.
            GPU pools (validated in config) use a GPU AMI and carry the nvidia.com/gpu taint.
        cluster_name: the EKS cluster to join (the cluster resource's name, so it is created first).
        node_role: the shared node IAM role.
        subnet_ids: private subnets for the instances.
        prevent_destroy: protect the node group from `terraform destroy`.
    """

    def __init__(
        self, scope: Construct, id: str, *, name: str, config: NodePoolConfig, cluster_name: str, node_role: NodeRole,
        subnet_ids: list[str], prevent_destroy: bool = False,
    ) -> None:
        super().__init__(scope, id)
        self.launch_template = LaunchTemplate(
            self, "launch-template", name=name, update_default_version=True,
            # IMDSv2 only, one hop: pods cannot reach the node's instance credentials.
            metadata_options=LaunchTemplateMetadataOptions(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
            ),
            block_device_mappings=[LaunchTemplateBlockDeviceMappings(
                device_name="/dev/xvda",
                ebs=LaunchTemplateBlockDeviceMappingsEbs(volume_size=config.disk_size_gb, volume_type="gp3",
                                                         encrypted="true", delete_on_termination="true"),
            )],
            tag_specifications=[LaunchTemplateTagSpecifications(resource_type="instance", tags={"Name": name})],
        )
        self.node_group = EksNodeGroup(
            self, "node-group", cluster_name=cluster_name, node_group_name=name, node_role_arn=node_role.role.arn,
            subnet_ids=subnet_ids, instance_types=list(config.instance_types), ami_type=config.ami_type,
            capacity_type=config.capacity_type, labels=dict(config.labels) or None,
            scaling_config=EksNodeGroupScalingConfig(min_size=config.min_size, max_size=config.max_size,
                                                     desired_size=config.desired_size),
            taint=[EksNodeGroupTaint(key=t.key, value=t.value or None, effect=TAINT_EFFECTS[t.effect]) for t in config.taints] or None,
            launch_template=EksNodeGroupLaunchTemplate(
                id=self.launch_template.id, version=Token.as_string(self.launch_template.latest_version)
            ),
            depends_on=node_role.attachments,
            # The autoscaler owns desired_size once the pool runs.
            lifecycle=TerraformResourceLifecycle(
                ignore_changes=["scaling_config[0].desired_size"],
                prevent_destroy=prevent_destroy or None,
            ),
        )
        self.name = self.node_group.node_group_name
