"""Prediction ids any replica can check: `<nonce>.<class index>.<signature>`, or for a regressor
`<nonce>.v<the predicted value's 64 bits, hex>.<signature>`.

The nonce is 64 random bits drawn once per process (again in each forked worker), a request
counter and the row's number within the request (28 hex digits), so ids are unique without a
random draw per request (a getrandom call cost ~9 % of a request) or per row; the signature is
keyed BLAKE2b (a MAC by design, RFC 7693; 64 bits) of nonce and class index, one C call of about
0.5 µs per row. The nonce needs to be unique, not secret: the MAC is what cannot be forged.

Ground truth comes back later, to whichever replica (and whichever model version) is serving then,
so an id carries what is needed to score the prediction (the predicted class) and a MAC that
proves this platform issued it; an id that does not verify is unknown (a 4xx). The key is the
environment's `id_key` (toolkit/feedback_auth.py): there is no fallback key anyone could derive.

An id is parsed strictly: ASCII lower-case hex and digits only, the class index without leading
zeros, and nothing after the MAC (not even a newline), so each prediction has exactly one spelling.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import re
import secrets
import struct

# 20-digit nonces: ids of earlier servers. fullmatch, and [0-9] not \d: no trailing newline, no other scripts' digits.
_ID = re.compile(r"([0-9a-f]{16,32})\.(0|[1-9][0-9]{0,3}|v[0-9a-f]{16})\.([0-9a-f]{16})", re.ASCII)


def value_token(value: float) -> str:
    """A regressor's predicted value as an id's middle part: its float64 bits, so the id carries it exactly."""
    return "v" + struct.pack(">d", value).hex()


_TAILS: dict[tuple[int, int], tuple[str, bytes]] = {}


def _tail(row: int, index: int | str) -> tuple[str, bytes]:
    """An id's row number and class index (`<row:04x>.<index>`), as text and as the MAC's input; cached
    for the (row, class) pairs seen, at most 65,536 of them."""
    text = f"{row:04x}.{index}"
    tail = (text, text.encode())
    if len(_TAILS) < 65536 and index.__class__ is int:  # a regressor's values rarely repeat: not cached
        _TAILS[(row, index)] = tail
    return tail


class PredictionIds:
    def __init__(self, key: bytes) -> None:
        self.key = key if len(key) <= 64 else hashlib.sha256(key).digest()  # BLAKE2b takes keys up to 64 bytes
        self._reseed()
        os.register_at_fork(after_in_child=self._reseed)  # forked workers must not repeat the parent's nonces

    def _reseed(self) -> None:
        self._process = secrets.token_hex(8)
        self._requests = itertools.count()

    def _sign(self, nonce: str, index: int | str) -> str:
        return hashlib.blake2b(f"{nonce}.{index}".encode(), key=self.key, digest_size=8).hexdigest()

    def issue_many(self, indices: list[int] | list[str]) -> list[str]:
        """Ids for one request's rows, given each row's predicted class index (or value_token). The MAC's state after the
        key and the request's random prefix is computed once and copied per row (same tags as `_sign`);
        the rows' tails come ready-made from `_TAILS` (this loop is ~0.4 µs a row)."""
        prefix = f"{self._process}{next(self._requests) & 0xFFFFFFFF:08x}"
        copy = hashlib.blake2b(prefix.encode(), key=self.key, digest_size=8).copy
        cached = _TAILS.get
        ids = []
        for row, index in enumerate(indices):
            text, data = cached((row, index)) or _tail(row, index)
            mac = copy()
            mac.update(data)
            ids.append(prefix + text + "." + mac.hexdigest())
        return ids

    def issue(self, index: int) -> str:
        return self.issue_many([index])[0]

    def _verified(self, prediction_id: str) -> str | None:
        """The id's middle part (class index or value token) when this platform issued the id."""
        match = _ID.fullmatch(prediction_id) if prediction_id.__class__ is str else None
        if match is None:
            return None
        nonce, middle, signature = match.group(1), match.group(2), match.group(3)
        return middle if hmac.compare_digest(signature, self._sign(nonce, middle)) else None

    def predicted_index(self, prediction_id: str) -> int | None:
        """The predicted class index the id was issued for; None when this platform did not issue it."""
        middle = self._verified(prediction_id)
        return int(middle) if middle is not None and middle[0] != "v" else None

    def predicted_value(self, prediction_id: str) -> float | None:
        """A regressor's predicted value the id was issued for; None when this platform did not issue it."""
        middle = self._verified(prediction_id)
        return struct.unpack(">d", bytes.fromhex(middle[1:]))[0] if middle is not None and middle[0] == "v" else None
