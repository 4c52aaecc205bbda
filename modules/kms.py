"""A customer-managed KMS key with rotation and an explicit key policy.

The account's root may administer the key (what AWS requires so the key never becomes
unmanageable) but not use it directly: using it (decrypt, generate data keys) is allowed to the
account's IAM principals only through the services that hold data under it (`via_services`, e.g.
S3 and Secrets Manager for the artifact store's key), so a principal with broad IAM rights still
reaches data only where that service's own policy (a bucket policy, a secret's resource policy)
lets it. AWS services named in `service_principals` use the key themselves.
"""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from modules.cross_account import grant_to_roles
from modules.lifecycle import protect

# Administration without use: no Encrypt/Decrypt/GenerateDataKey, and no CreateGrant (a grant is use, delegated).
ADMIN_ACTIONS = ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias", "kms:DescribeKey", "kms:List*", "kms:GetKeyPolicy",
                 "kms:PutKeyPolicy", "kms:GetKeyRotationStatus", "kms:EnableKeyRotation", "kms:DisableKeyRotation",
                 "kms:EnableKey", "kms:DisableKey", "kms:UpdateKeyDescription", "kms:RevokeGrant", "kms:RetireGrant",
                 "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"]
USE_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant",
               "kms:ListGrants"]


class EncryptionKey(Construct):
    """KMS key for one purpose (cluster secrets, registry, bucket, logs).

    Args:
        alias: alias name without the `alias/` prefix.
        account_id: owning account; its root administers the key.
        service_principals: AWS services allowed to use the key (e.g. `logs.<region>.amazonaws.com`).
        prevent_destroy: protect the key from `terraform destroy`.
        decrypt_through: (service endpoint, role ARNs): roles of other accounts that may decrypt
            through that service only, e.g. ("s3.eu-west-1.amazonaws.com", [promotion targets' roles]).
        region / via_services: the services (e.g. "s3", "secretsmanager") through which the account's
            IAM principals may use the key; none: only `service_principals` use it.
    """

    def __init__(
        self, scope: Construct, id: str, *, alias: str, account_id: str, description: str,
        service_principals: list[str] | None = None, prevent_destroy: bool = False, decrypt_through: tuple[str, list[str]] | None = None,
        region: str = "", via_services: list[str] = (),
    ) -> None:
        super().__init__(scope, id)
        root = {"AWS": f"arn:aws:iam::{account_id}:root"}
        statements = [{"Sid": "AccountAdministers", "Effect": "Allow", "Principal": root, "Action": ADMIN_ACTIONS, "Resource": "*"}]
        if via_services:
            statements.append({
                "Sid": "AccountUsesThroughServices", "Effect": "Allow", "Principal": root, "Action": USE_ACTIONS, "Resource": "*",
                "Condition": {"StringEquals": {"kms:ViaService": [f"{service}.{region}.amazonaws.com" for service in via_services],
                                               "kms:CallerAccount": account_id}},
            })
        if service_principals:
            statements.append({
                "Sid": "ServicesUseTheKey",
                "Effect": "Allow",
                "Principal": {"Service": service_principals},
                "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                "Resource": "*",
            })
        if decrypt_through and decrypt_through[1]:
            service, roles = decrypt_through
            statements.append(grant_to_roles("RolesDecryptThroughService", roles, ["kms:Decrypt"], "*",
                                             {"StringEquals": {"kms:ViaService": service}}))
        self.key = KmsKey(
            self, "key", description=description, enable_key_rotation=True, deletion_window_in_days=30,
            policy=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            lifecycle=protect(prevent_destroy),
        )
        KmsAlias(self, "alias", name=f"alias/{alias}", target_key_id=self.key.key_id)
        self.arn = self.key.arn
