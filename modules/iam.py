"""Small IAM helpers shared by the constructs."""

from __future__ import annotations

import json


def assume_role_policy(service: str) -> str:
    """Trust policy letting an AWS service (e.g. `eks.amazonaws.com`) assume a role."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


def managed_policy(name: str) -> str:
    return f"arn:aws:iam::aws:policy/{name}"
