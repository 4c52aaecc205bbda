"""IRSA roles: one per workload service account, least privilege."""

from __future__ import annotations

from cdktf import Fn
from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
    DataAwsIamPolicyDocumentStatementCondition,
    DataAwsIamPolicyDocumentStatementPrincipals,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from constructs import Construct


def irsa_trust_policy(
    scope: Construct, id: str, oidc_provider_arn: str, oidc_issuer: str, namespace: str, service_account: str
) -> str:
    """Only `system:serviceaccount:<namespace>:<service_account>` may assume the role.
    (A policy document data source, because the condition keys contain the issuer token.)"""
    host = Fn.replace(oidc_issuer, "https://", "")
    document = DataAwsIamPolicyDocument(scope, id, statement=[DataAwsIamPolicyDocumentStatement(
        effect="Allow", actions=["sts:AssumeRoleWithWebIdentity"],
        principals=[DataAwsIamPolicyDocumentStatementPrincipals(type="Federated", identifiers=[oidc_provider_arn])],
        condition=[
            DataAwsIamPolicyDocumentStatementCondition(
                test="StringEquals", variable=f"{host}:sub", values=[f"system:serviceaccount:{namespace}:{service_account}"]),
            DataAwsIamPolicyDocumentStatementCondition(test="StringEquals", variable=f"{host}:aud", values=["sts.amazonaws.com"]),
        ],
    )])
    return document.json


class WorkloadRole(Construct):
    """An IRSA role for one service account.

    Args:
        name: role name.
        oidc_provider_arn / oidc_issuer: the cluster's OIDC provider.
        namespace / service_account: who may assume it.
        bucket_arn / kms_key_arn: the artifact store and its key (None: no access to the store).
        read_prefixes / write_prefixes: S3 prefixes the workload may read / write.
        repository_arn: ECR repository it may pull from (None: no ECR access).
        secret_arns: Secrets Manager secrets it may read (the model-signing key for training, the feedback credentials for serving).
        statements: any other statements of its own (the retrain controller's queue).
    """

    def __init__(
        self, scope: Construct, id: str, *, name: str, oidc_provider_arn: str, oidc_issuer: str, namespace: str,
        service_account: str, bucket_arn: str | None = None, kms_key_arn: str | None = None, read_prefixes: list[str] = (),
        write_prefixes: list[str] = (), repository_arn: str | None = None, secret_arns: list[str] = (), statements: list[dict] = (),
    ) -> None:
        super().__init__(scope, id)
        self.role = IamRole(self, "role", name=name,
                            assume_role_policy=irsa_trust_policy(self, "trust", oidc_provider_arn, oidc_issuer, namespace, service_account))
        own = list(statements)
        statements = [
            {"Sid": "ListOwnPrefixes", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in [*read_prefixes, *write_prefixes]]}}},
            {"Sid": "Read", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "Resource": [f"{bucket_arn}/{p}*" for p in read_prefixes]},
            {"Sid": "UseBucketKey", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": kms_key_arn},
        ] if bucket_arn else []
        if write_prefixes:
            statements.append({"Sid": "Write", "Effect": "Allow", "Action": ["s3:PutObject"],
                               "Resource": [f"{bucket_arn}/{p}*" for p in write_prefixes]})
        if repository_arn:
            statements.append({"Sid": "PullImages", "Effect": "Allow",
                               "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
                               "Resource": repository_arn})
            # GetAuthorizationToken cannot be scoped to a repository.
            statements.append({"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"})
        if secret_arns:
            statements.append({"Sid": "ReadSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                               "Resource": list(secret_arns)})
        statements += own
        IamRolePolicy(self, "policy", role=self.role.id, policy=Fn.jsonencode({"Version": "2012-10-17", "Statement": statements}))
        self.arn = self.role.arn
