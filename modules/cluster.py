"""EKS control plane: IAM role, KMS-encrypted secrets, control-plane logs, OIDC provider for IRSA."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.eks_cluster import (
    EksCluster,
    EksClusterAccessConfig,
    EksClusterEncryptionConfig,
    EksClusterEncryptionConfigProvider,
    EksClusterVpcConfig,
)
from cdktf_cdktf_provider_aws.iam_openid_connect_provider import IamOpenidConnectProvider
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

from modules.iam import assume_role_policy, managed_policy
from modules.kms import EncryptionKey
from modules.lifecycle import protect
from toolkit.config import ClusterConfig

# Root CA thumbprint of the EKS OIDC endpoints; IAM no longer checks it for EKS issuers,
# but the API still requires one (the tls provider is not available offline).
EKS_OIDC_THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"


class Cluster(Construct):
    """An EKS cluster in the given subnets.

    Args:
        config: name, Kubernetes version, endpoint access, log types.
        subnet_ids: private subnets for the control-plane ENIs.
        account_id / region: for the KMS key policy and log group.
        log_retention_days: CloudWatch retention of control-plane logs.
        prevent_destroy: protect the cluster from `terraform destroy`.
    """

    def __init__(
        self, scope: Construct, id: str, *, config: ClusterConfig, subnet_ids: list[str], account_id: str,
        region: str, log_retention_days: int = 365, prevent_destroy: bool = False,
    ) -> None:
        super().__init__(scope, id)
        self.role = IamRole(self, "role", name=f"{config.name}-cluster", assume_role_policy=assume_role_policy("eks.amazonaws.com"))
        attachment = IamRolePolicyAttachment(self, "role-policy", role=self.role.name, policy_arn=managed_policy("AmazonEKSClusterPolicy"))
        self.secrets_key = EncryptionKey(self, "secrets-key", alias=f"{config.name}-secrets", account_id=account_id,
                                         description=f"EKS secrets encryption for {config.name}", prevent_destroy=prevent_destroy,
                                         region=region, via_services=["eks"])
        logs_key = EncryptionKey(self, "logs-key", alias=f"{config.name}-logs", account_id=account_id,
                                 description=f"EKS control-plane logs of {config.name}",
                                 service_principals=[f"logs.{region}.amazonaws.com"])
        # Created before the cluster so its retention and encryption apply from the first log line.
        log_group = CloudwatchLogGroup(self, "logs", name=f"/aws/eks/{config.name}/cluster",
                                       retention_in_days=log_retention_days, kms_key_id=logs_key.arn)
        self.cluster = EksCluster(
            self, "cluster", name=config.name, version=config.kubernetes_version, role_arn=self.role.arn,
            enabled_cluster_log_types=list(config.log_types),
            vpc_config=EksClusterVpcConfig(
                subnet_ids=subnet_ids,
                endpoint_private_access=config.endpoint_private_access,
                endpoint_public_access=config.endpoint_public_access,
                public_access_cidrs=list(config.public_access_cidrs) if config.endpoint_public_access else None,
            ),
            encryption_config=EksClusterEncryptionConfig(
                resources=["secrets"], provider=EksClusterEncryptionConfigProvider(key_arn=self.secrets_key.arn)
            ),
            # Access entries only (modules/cluster_access.py): the creator gets no implicit admin entry.
            access_config=EksClusterAccessConfig(authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False)
            if config.access_entries else None,
            depends_on=[attachment, log_group],
            lifecycle=protect(prevent_destroy),
        )
        issuer = self.cluster.identity.get(0).oidc.get(0).issuer
        self.oidc_provider = IamOpenidConnectProvider(
            self, "oidc", url=issuer, client_id_list=["sts.amazonaws.com"], thumbprint_list=[EKS_OIDC_THUMBPRINT]
        )
        self.name = self.cluster.name
        self.oidc_issuer = issuer
