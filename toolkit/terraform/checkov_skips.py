"""checkov checks we skip on the synthesized stacks, each with its reason.

Used by `make lint`, `toolkit plan` (checkov on the plan) and tests/test_checkov.py; anything not
listed here must pass. (In toolkit/ so `toolkit plan` needs no import from infra/.)
"""

SKIPS = {
    "CKV_AWS_18": "S3 access logging needs a second log bucket that would itself need logging; object access is "
                  "audited with CloudTrail data events at the account level instead",
    "CKV2_AWS_62": "nothing consumes S3 object events yet; training and serving address models by key and version",
    "CKV2_AWS_57": "the one secret is the model-signing private key: it is rotated by `toolkit signing-key --env ENV`, which "
                   "stores a new key pair's private half and writes the public half for the repository, not by a rotation Lambda",
    "CKV_AWS_144": "cross-region replication doubles storage cost; artifacts are versioned and reproducible from data and code",
}
