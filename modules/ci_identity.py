"""Delivery from GitHub Actions: GitHub's OIDC provider and an environment's CI roles.

- `plan` (pull requests of the repository only): reads what `terraform plan` refreshes, reads the
  state object and writes only its lock object, and nothing else (no object in the artifact
  store, no image, no cluster);
- `deploy` (the GitHub environment named after this one only): pushes to this environment's
  ECR repository, reads and writes its artifact store's prefixes, reads the state, reads the
  model-signing key, and reaches the cluster (its Kubernetes rights are EKS access entries, in
  modules/cluster_access.py); it reads the promotion records `toolkit deploy` holds it to and
  cannot write them;
- `promote` (only for an environment with `promotion_from`; the GitHub environment
  `<env>-promotion` only): reads the source's images, verified releases and models, pushes to this
  environment's repository and writes its models and promotion records. It is the only principal
  the bucket policy lets write `promotions/<env>/`, so whoever deploys cannot vouch for a digest.

Trust is `sts:AssumeRoleWithWebIdentity` from the provider, with `aud` = `sts.amazonaws.com` and
`sub` equal to one exact subject (never a wildcard). The provider exists once per AWS account:
`ci.create_oidc_provider` says which environment creates it; the others look it up by URL.
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.data_aws_iam_openid_connect_provider import DataAwsIamOpenidConnectProvider
from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
    DataAwsIamPolicyDocumentStatementCondition,
    DataAwsIamPolicyDocumentStatementPrincipals,
)
from cdktf_cdktf_provider_aws.iam_openid_connect_provider import IamOpenidConnectProvider
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct

from modules.registry import PULL_ACTIONS
from toolkit.config import EnvironmentConfig
from toolkit.store.layout import CI_DEPLOY_READS, CI_DEPLOY_WRITES, PROMOTE_READS_WRITES, PROMOTION_SOURCE_READS, StoreLayout

GITHUB_OIDC_URL = "https://token.actions.githubusercontent.com"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
AUDIENCE = "sts.amazonaws.com"
# GitHub's intermediate CA thumbprints; IAM no longer checks them for this provider, the API still wants one.
GITHUB_THUMBPRINTS = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]


# What the provider describes to refresh the network, node groups and their launch templates.
EC2_DESCRIBED = ("Vpcs", "Subnets", "RouteTables", "InternetGateways", "NatGateways", "Addresses", "AddressesAttribute",
                 "LaunchTemplates", "LaunchTemplateVersions", "SecurityGroups", "SecurityGroupRules", "FlowLogs", "NetworkAcls",
                 "AvailabilityZones", "Tags", "NetworkInterfaces", "VpcEndpoints", "PrefixLists", "AccountAttributes", "Images")


def pull_request_subject(repository: str) -> str:
    return f"repo:{repository}:pull_request"


def environment_subject(repository: str, env: str, ref: str | None = None) -> str:
    """GitHub's `sub` claim for a job in the environment `env`; with `ref`, the form a repository whose
    OIDC subject template includes `ref` issues, so only that branch's jobs match."""
    return f"repo:{repository}:environment:{env}" + (f":ref:{ref}" if ref else "")


def promotion_environment(env: str) -> str:
    """The GitHub environment the promote job of `env` runs in (its own protection rules)."""
    return f"{env}-promotion"


def _statement(sid: str, actions: list[str], resources: list[str], conditions: list[tuple[str, str, list[str]]] = ()) -> \
        DataAwsIamPolicyDocumentStatement:
    return DataAwsIamPolicyDocumentStatement(
        sid=sid, effect="Allow", actions=actions, resources=resources,
        condition=[DataAwsIamPolicyDocumentStatementCondition(test=t, variable=v, values=vals) for t, v, vals in conditions] or None)


def promotion_source_statements(source: EnvironmentConfig) -> list[DataAwsIamPolicyDocumentStatement]:
    """What `toolkit promote --from SOURCE` (the target's promote role) reads there: the images by
    digest, the verified-release records and the models (through S3 only for the store's key).
    Nothing is written in SOURCE."""
    region_account = f"{source.aws.region}:{source.aws.account_id}"
    bucket = f"arn:aws:s3:::{source.artifact_store.bucket}"
    return [
        _statement("PullFromPromotionSource", PULL_ACTIONS, [f"arn:aws:ecr:{region_account}:repository/{source.registry.name}"]),
        _statement("ReadPromotionSource", ["s3:GetObject"], [f"{bucket}/{prefix}*" for prefix in promotion_source_prefixes(source)]),
        _statement("DecryptPromotionSourceThroughS3", ["kms:Decrypt"], [f"arn:aws:kms:{region_account}:key/*"],
                   [("StringEquals", "kms:ViaService", [f"s3.{source.aws.region}.amazonaws.com"])]),
    ]


def _store_statements(bucket_arn: str, reads: list[str], writes: list[str]) -> list[DataAwsIamPolicyDocumentStatement]:
    """List and read `reads`, write `writes` (key prefixes of the artifact store)."""
    return [
        _statement("ListArtifactPrefixes", ["s3:ListBucket"], [bucket_arn], [("StringLike", "s3:prefix", [f"{p}*" for p in reads])]),
        _statement("ReadArtifacts", ["s3:GetObject"], [f"{bucket_arn}/{p}*" for p in reads]),
        _statement("WriteArtifacts", ["s3:PutObject"], [f"{bucket_arn}/{p}*" for p in writes]),
    ]


def promotion_source_prefixes(source: EnvironmentConfig) -> list[str]:
    return StoreLayout.of(source).prefixes(PROMOTION_SOURCE_READS)


class CiIdentity(Construct):
    """The OIDC provider (created or looked up) and the plan, deploy and promote roles of one environment.

    Args:
        config: the environment (ci.github_repository, ci.create_oidc_provider, state, names).
        account_id / region: where the resources live (IAM resource ARNs are scoped to them).
        registry_arn / bucket_arn / store_key_arn: this environment's ECR repository, artifact store and its key.
        cluster_arn: the EKS cluster (eks:DescribeCluster for the kubeconfig).
        signing_secret_arn: the model-signing private key's secret (read by the deploy role, which trains in CI).
        promotion_source: the environment this one promotes from (`promotion_from`): the promote role
            reads its verified releases, models and images (its stack grants the same by resource policy).
    """

    def __init__(self, scope: Construct, id: str, *, config: EnvironmentConfig, account_id: str, registry_arn: str, bucket_arn: str,
                 store_key_arn: str, cluster_arn: str, signing_secret_arn: str,
                 promotion_source: EnvironmentConfig | None = None) -> None:
        super().__init__(scope, id)
        ci = config.ci
        if ci.create_oidc_provider:
            provider = IamOpenidConnectProvider(self, "github-oidc", url=GITHUB_OIDC_URL, client_id_list=[AUDIENCE],
                                                thumbprint_list=GITHUB_THUMBPRINTS)
        else:
            provider = DataAwsIamOpenidConnectProvider(self, "github-oidc", url=GITHUB_OIDC_URL)
        self.provider_arn = provider.arn

        state_bucket = f"arn:aws:s3:::{config.state.bucket}"
        state_object = f"{state_bucket}/{config.state.key}"
        region_account = f"{config.aws.region}:{account_id}"
        iam_resources = [f"arn:aws:iam::{account_id}:{kind}/*" for kind in ("role", "policy", "oidc-provider", "instance-profile")]
        read_state = [
            _statement("ListStateBucket", ["s3:ListBucket"], [state_bucket]),
            _statement("ReadState", ["s3:GetObject"], [state_object]),
            # The state bucket is encrypted with the account's aws/s3 key: decrypt through S3 only.
            _statement("DecryptStateThroughS3", ["kms:Decrypt"], [f"arn:aws:kms:{region_account}:key/*"],
                       [("StringEquals", "kms:ViaService", [f"s3.{config.aws.region}.amazonaws.com"])]),
        ]

        plan = [
            *read_state,
            _statement("WriteOnlyTheStateLock", ["s3:PutObject", "s3:DeleteObject"], [f"{state_object}.tflock"]),
            # What `terraform plan` refreshes, read-only: the few calls that take no resource ARN on "*",
            # everything else scoped to this account and region.
            _statement("DescribeUnscoped", [*(f"ec2:Describe{what}" for what in EC2_DESCRIBED), "sts:GetCallerIdentity", "kms:ListAliases", "kms:ListKeys",
                                            "secretsmanager:ListSecrets", "aps:ListWorkspaces", "eks:ListClusters", "sns:ListTopics",
                                            "sns:GetSubscriptionAttributes", "logs:DescribeLogGroups", "iam:ListOpenIDConnectProviders",
                                            "sqs:ListQueues"], ["*"]),
            # Exact actions, no wildcards: a wildcard would also grant the family's members that take other resources.
            _statement("DescribeInfrastructure", ["ec2:DescribeVpcAttribute", "eks:DescribeCluster", "eks:DescribeNodegroup",
                                                  "eks:DescribeAccessEntry", "eks:DescribeAddon", "eks:ListNodegroups", "eks:ListAccessEntries",
                                                  "eks:ListAssociatedAccessPolicies", "eks:ListTagsForResource", "ecr:DescribeRepositories",
                                                  "ecr:ListTagsForResource", "logs:ListTagsForResource", "logs:ListTagsLogGroup",
                                                  "aps:DescribeWorkspace", "aps:DescribeLoggingConfiguration", "aps:DescribeRuleGroupsNamespace",
                                                  "aps:DescribeAlertManagerDefinition", "aps:DescribeScraper", "aps:ListRuleGroupsNamespaces",
                                                  "aps:ListTagsForResource", "sns:ListTagsForResource", "sns:ListSubscriptionsByTopic",
                                                  "kms:ListResourceTags", "sqs:GetQueueAttributes", "sqs:ListQueueTags"],
                       [f"arn:aws:ec2:{region_account}:vpc/*", f"arn:aws:eks:{region_account}:*",
                        f"arn:aws:ecr:{region_account}:repository/*",
                        f"arn:aws:logs:{region_account}:log-group:*", f"arn:aws:aps:{region_account}:*",
                        f"arn:aws:sns:{region_account}:*", f"arn:aws:kms:{region_account}:key/*", f"arn:aws:sqs:{region_account}:*"]),
            _statement("ReadInfrastructure", ["ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy", "sns:GetTopicAttributes",
                                              "kms:DescribeKey", "kms:GetKeyPolicy",
                                              "kms:GetKeyRotationStatus", "secretsmanager:DescribeSecret",
                                              "secretsmanager:GetResourcePolicy"],
                       [f"arn:aws:ecr:{region_account}:repository/*", f"arn:aws:sns:{region_account}:*",
                        f"arn:aws:kms:{region_account}:key/*", f"arn:aws:secretsmanager:{region_account}:secret:*"]),
            _statement("ListIam", ["iam:ListRolePolicies", "iam:ListAttachedRolePolicies", "iam:ListInstanceProfilesForRole",
                                   "iam:ListRoleTags", "iam:ListPolicyVersions", "iam:ListPolicyTags", "iam:ListOpenIDConnectProviderTags",
                                   "iam:ListInstanceProfileTags"], iam_resources),
            _statement("ReadIam", ["iam:GetRole", "iam:GetRolePolicy", "iam:GetPolicy", "iam:GetPolicyVersion",
                                   "iam:GetOpenIDConnectProvider", "iam:GetInstanceProfile"], iam_resources),
            _statement("ReadBucketSettings", ["s3:GetBucket*", "s3:GetEncryptionConfiguration", "s3:GetLifecycleConfiguration",
                                              "s3:GetReplicationConfiguration", "s3:GetAccelerateConfiguration",
                                              "s3:ListBucket"], [bucket_arn]),
        ]
        self.plan_role = self._role("plan", config.ci_role_name("plan"), pull_request_subject(ci.github_repository), plan)

        layout = StoreLayout.of(config)
        push = [
            _statement("RegistryLogin", ["ecr:GetAuthorizationToken"], ["*"]),  # cannot be scoped to a repository
            _statement("PushAndPullThisRepository", [
                "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                "ecr:PutImage", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:DescribeImages"], [registry_arn]),
            _statement("UseArtifactKey", ["kms:Decrypt", "kms:GenerateDataKey"], [store_key_arn]),
        ]
        deploy = [
            *read_state,
            *push,
            *_store_statements(bucket_arn, layout.prefixes(CI_DEPLOY_READS), layout.prefixes(CI_DEPLOY_WRITES)),
            _statement("DescribeCluster", ["eks:DescribeCluster"], [cluster_arn]),
            _statement("ReadSigningKey", ["secretsmanager:GetSecretValue"], [signing_secret_arn]),
        ]
        self.deploy_role = self._role("deploy", config.ci_role_name("deploy"),
                                      environment_subject(ci.github_repository, config.name, ci.subject_ref), deploy)
        self.promote_role = None
        if promotion_source is not None:
            promoted = layout.prefixes(PROMOTE_READS_WRITES)
            self.promote_role = self._role("promote", config.ci_role_name("promote"),
                                           environment_subject(ci.github_repository, promotion_environment(config.name), ci.subject_ref),
                                           [*push, *_store_statements(bucket_arn, promoted, promoted),
                                            *promotion_source_statements(promotion_source)])

    def _role(self, id: str, name: str, subject: str, statements: list) -> IamRole:
        trust = DataAwsIamPolicyDocument(self, f"{id}-trust", statement=[DataAwsIamPolicyDocumentStatement(
            effect="Allow", actions=["sts:AssumeRoleWithWebIdentity"],
            principals=[DataAwsIamPolicyDocumentStatementPrincipals(type="Federated", identifiers=[self.provider_arn])],
            condition=[
                DataAwsIamPolicyDocumentStatementCondition(test="StringEquals", variable=f"{GITHUB_OIDC_HOST}:aud", values=[AUDIENCE]),
                DataAwsIamPolicyDocumentStatementCondition(test="StringEquals", variable=f"{GITHUB_OIDC_HOST}:sub", values=[subject]),
            ])])
        role = IamRole(self, f"{id}-role", name=name, assume_role_policy=trust.json, max_session_duration=3600)
        policy = DataAwsIamPolicyDocument(self, f"{id}-policy-document", statement=statements)
        IamRolePolicy(self, f"{id}-policy", role=role.id, policy=policy.json)
        return role
