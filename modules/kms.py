"""A customer-managed KMS key with rotation and an explicit key policy."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct

from modules.cross_account import grant_to_roles
from modules.lifecycle import protect


class EncryptionKey(Construct):
    """KMS key for one purpose (cluster secrets, registry, bucket, logs).

    Args:
        alias: alias name without the `alias/` prefix.
        account_id: owning account; its root administers the key.
        service_principals: AWS services allowed to use the key (e.g. `logs.<region>.amazonaws.com`).
        prevent_destroy: protect the key from `terraform destroy`.
        decrypt_through: (service endpoint, role ARNs): roles of other accounts that may decrypt
            through that service only, e.g. ("s3.eu-west-1.amazonaws.com", [promotion targets' roles]).
    """

    def __init__(
        self, scope: Construct, id: str, *, alias: str, account_id: str, description: str,
        service_principals: list[str] | None = None, prevent_destroy: bool = False, decrypt_through: tuple[str, list[str]] | None = None,
    ) -> None:
        super().__init__(scope, id)
        statements = [{
            "Sid": "AccountAdministers",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }]
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
