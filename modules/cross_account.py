"""Resource-policy statements that grant named roles of other accounts (the promotion targets' CI
deploy roles) access to this environment's resources.

The principal is the role's account with an `aws:PrincipalArn` condition, not the role ARN itself:
S3, KMS and ECR reject a policy naming a role that does not exist yet, and the target's role is
created by the target's own stack, which may be deployed later.
"""

from __future__ import annotations


def grant_to_roles(sid: str, role_arns: list[str], actions: list[str], resources: list[str] | str,
                   condition: dict | None = None) -> dict:
    accounts = sorted({arn.split(":")[4] for arn in role_arns})
    return {"Sid": sid, "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{account}:root" for account in accounts]},
            "Action": actions, "Resource": resources,
            "Condition": {"ArnEquals": {"aws:PrincipalArn": sorted(role_arns)}, **(condition or {})}}
