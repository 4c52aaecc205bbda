"""Prediction ids any replica can check: `<random>.<class index>.<signature>`.

Ground truth comes back later, to whichever replica (and whichever model version) is serving then,
so an id carries what is needed to score the prediction (the predicted class) and an HMAC that
proves this platform issued it; an id that does not verify is unknown (a 4xx). The key comes
from the environment variable `feedback.secret_env` (a Kubernetes Secret); without one it
falls back to a key derived from the environment's name, which stops typos and random ids but
not a client who reads this code.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets

_ID = re.compile(r"^([0-9a-f]{16})\.(\d{1,4})\.([0-9a-f]{16})$")


class PredictionIds:
    def __init__(self, key: bytes) -> None:
        self.key = key

    @classmethod
    def for_environment(cls, env: str, secret_env: str) -> PredictionIds:
        secret = os.environ.get(secret_env)
        return cls(secret.encode() if secret else f"toolkit-feedback:{env}".encode())

    def _sign(self, nonce: str, index: int) -> str:
        return hmac.new(self.key, f"{nonce}.{index}".encode(), hashlib.sha256).hexdigest()[:16]

    def issue(self, index: int) -> str:
        nonce = secrets.token_hex(8)
        return f"{nonce}.{index}.{self._sign(nonce, index)}"

    def predicted_index(self, prediction_id: str) -> int | None:
        """The predicted class index the id was issued for; None when this platform did not issue it."""
        match = _ID.match(prediction_id) if isinstance(prediction_id, str) else None
        if match is None:
            return None
        nonce, index, signature = match.group(1), int(match.group(2)), match.group(3)
        return index if hmac.compare_digest(signature, self._sign(nonce, index)) else None
