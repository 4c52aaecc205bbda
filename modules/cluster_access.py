"""Who may use the Kubernetes API of the cluster: EKS access entries, nothing implicit.

The cluster runs in authentication mode API without the creator's bootstrap admin entry, so every
principal is listed here:
  - the CI deploy role: `edit` in the workloads namespace and in kube-system (the NVIDIA device
    plugin and the DCGM exporter live there), `view` cluster-wide (namespaces, nodes: what the
    toolkit reads before it applies);
  - `cluster.admin_principals`: cluster-admin.
Namespaces are cluster-scoped: the deploy role cannot create the workloads namespace, so the
first release of an environment is made by an admin principal (README "Delivery from CI").
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.eks_access_entry import EksAccessEntry
from cdktf_cdktf_provider_aws.eks_access_policy_association import (
    EksAccessPolicyAssociation,
    EksAccessPolicyAssociationAccessScope,
)
from constructs import Construct

POLICY = "arn:aws:eks::aws:cluster-access-policy/{}"


class ClusterAccess(Construct):
    """Args:
        cluster_name: the EKS cluster.
        deploy_role_arn: the CI deploy role.
        namespace: the workloads namespace.
        admin_principals: IAM role/user ARNs that get cluster-admin.
    """

    def __init__(self, scope: Construct, id: str, *, cluster_name: str, deploy_role_arn: str, namespace: str,
                 admin_principals: list[str]) -> None:
        super().__init__(scope, id)
        deploy = EksAccessEntry(self, "deploy", cluster_name=cluster_name, principal_arn=deploy_role_arn, type="STANDARD")
        self._associate("deploy-edit", cluster_name, deploy, "AmazonEKSEditPolicy", [namespace, "kube-system"])
        self._associate("deploy-view", cluster_name, deploy, "AmazonEKSViewPolicy", None)
        for index, principal in enumerate(admin_principals):
            entry = EksAccessEntry(self, f"admin-{index}", cluster_name=cluster_name, principal_arn=principal, type="STANDARD")
            self._associate(f"admin-{index}-cluster-admin", cluster_name, entry, "AmazonEKSClusterAdminPolicy", None)

    def _associate(self, id: str, cluster_name: str, entry: EksAccessEntry, policy: str, namespaces: list[str] | None) -> None:
        scope = EksAccessPolicyAssociationAccessScope(type="namespace", namespaces=namespaces) if namespaces else \
            EksAccessPolicyAssociationAccessScope(type="cluster")
        EksAccessPolicyAssociation(self, id, cluster_name=cluster_name, principal_arn=entry.principal_arn,
                                   policy_arn=POLICY.format(policy), access_scope=scope, depends_on=[entry])
