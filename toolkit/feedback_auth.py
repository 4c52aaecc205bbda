"""Who may send ground truth: the feedback loop's credentials.

One JSON document per environment holds the key that signs prediction ids and the labellers'
bearer tokens, each stored as its sha256 (the server never holds a token it could leak):

    {"id_key": "<64 hex>", "labellers": {"<name>": "sha256:<64 hex>", ...}}

`toolkit feedback-token` writes it (emulated environments: `.local/feedback/<env>.json`; cloud:
the Secrets Manager secret the stack creates, `feedback_tokens.py`); the server reads it from
$TOOLKIT_FEEDBACK_SECRET, the file $TOOLKIT_FEEDBACK_SECRET_FILE names, or that secret. A request
to POST /v1/feedback names its labeller by `Authorization: Bearer <token>`: checked against every
stored hash with `hmac.compare_digest`, so the time taken does not depend on how much of a token matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass, field

LABELLER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
_KEY = re.compile(r"^[0-9a-f]{64}$")


class CredentialsError(ValueError):
    """The credentials document is malformed (names what is wrong, never a secret)."""


def token_hash(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class FeedbackCredentials:
    id_key: str  # hex: the key of the prediction ids' MAC
    labellers: dict[str, str] = field(default_factory=dict)  # name → "sha256:<hex>" of its token

    @classmethod
    def new(cls) -> FeedbackCredentials:
        return cls(secrets.token_hex(32), {})

    @classmethod
    def parse(cls, text: str | bytes, source: str) -> FeedbackCredentials:
        try:
            data = json.loads(text)
        except ValueError:
            raise CredentialsError(f"{source}: not a JSON credentials document") from None
        if not isinstance(data, dict) or set(data) - {"id_key", "labellers"}:
            raise CredentialsError(f"{source}: expected an object with id_key and labellers")
        key, labellers = data.get("id_key"), data.get("labellers", {})
        if not isinstance(key, str) or not _KEY.match(key):
            raise CredentialsError(f"{source}: id_key must be 64 hex digits")
        if not isinstance(labellers, dict) or not all(isinstance(n, str) and LABELLER_NAME.match(n) and isinstance(h, str)
                                                      and _HASH.match(h) for n, h in labellers.items()):
            raise CredentialsError(f"{source}: labellers must map names ({LABELLER_NAME.pattern}) to 'sha256:<hex>' token hashes")
        return cls(key, dict(labellers))

    def dumps(self) -> str:
        return json.dumps({"id_key": self.id_key, "labellers": dict(sorted(self.labellers.items()))}, indent=2) + "\n"

    def with_labeller(self, name: str, token: str) -> FeedbackCredentials:
        if not LABELLER_NAME.match(name):
            raise CredentialsError(f"labeller name {name!r}: lower-case letters, digits, '.', '_' and '-' (up to 63)")
        return FeedbackCredentials(self.id_key, {**self.labellers, name: token_hash(token)})

    def labeller_for(self, token: str) -> str | None:
        """The labeller whose token this is, or None; every stored hash is compared, found or not."""
        offered = token_hash(token).encode()
        found = None
        for name, stored in self.labellers.items():
            if hmac.compare_digest(offered, stored.encode()):
                found = name
        return found
