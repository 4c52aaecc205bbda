"""Ground truth on the server: who may give it, and that each prediction gets one label.

- `Labellers`: POST /v1/feedback needs `Authorization: Bearer <token>` of a labeller named in the
  environment's credentials (toolkit/feedback_auth.py): 401 without one, 403 for a token no
  labeller holds. The credentials come from the settings (the document, a file, or the Secrets
  Manager secret of a cloud environment, read once at start; the server does not start without them
  there). Without any (an emulated environment, or `toolkit serve` by hand) ids are signed with a
  key drawn at start and every label is refused.
- `LabelBook`: the first label given for a prediction id stands. The same label again is accepted
  and not counted again; a different one is a 409 naming the id (outcome "conflict"). The book
  remembers the newest `feedback.label_memory` ids per server; the retraining join applies the same
  rule to everything in the store (loop/feedback_data.py), so a replica that forgot cannot be used
  to relabel.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections import OrderedDict

from toolkit.errors import BadInputError
from toolkit.feedback_auth import CredentialsError, FeedbackCredentials
from toolkit.serving import LoopSettings

log = logging.getLogger("toolkit.serve")


def load_credentials(settings: LoopSettings) -> FeedbackCredentials | None:
    """The credentials the settings name; BadInputError (exit 2, before serving) when they name some and
    they cannot be had."""
    try:
        if settings.secret:
            return FeedbackCredentials.parse(settings.secret, "$TOOLKIT_FEEDBACK_SECRET")
        if settings.secret_file:
            try:
                with open(settings.secret_file, "rb") as handle:
                    return FeedbackCredentials.parse(handle.read(), settings.secret_file)
            except OSError as exc:
                raise BadInputError(f"cannot read the feedback credentials {settings.secret_file}: {exc.strerror}") from None
        if settings.secret_name:
            return FeedbackCredentials.parse(_read_secret(settings.secret_name, settings.region), f"secret {settings.secret_name}")
    except CredentialsError as exc:
        raise BadInputError(str(exc)) from None
    return None


def _read_secret(name: str, region: str | None) -> str:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    how = f"create it with `toolkit feedback-token --env {os.environ.get('TOOLKIT_ENV', 'ENV')} --name NAME`"
    try:
        value = boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=name).get("SecretString")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise BadInputError(f"no feedback credentials: the secret {name} cannot be read ({code}); {how}.") from None
    except BotoCoreError as exc:
        raise BadInputError(f"no feedback credentials: the secret {name} cannot be read ({exc}); {how}.") from None
    if not value:
        raise BadInputError(f"no feedback credentials: the secret {name} is empty; {how}.")
    return value


class Labellers:
    def __init__(self, credentials: FeedbackCredentials | None, env: str) -> None:
        self.credentials, self.env = credentials, env
        if credentials is None:
            log.warning("no feedback credentials: prediction ids are signed with a key drawn now and every label is refused "
                        "(`toolkit feedback-token --env %s`)", env)
        elif not credentials.labellers:
            log.warning("the feedback credentials name no labeller: every label is refused (`toolkit feedback-token --env %s`)", env)

    @property
    def id_key(self) -> bytes:
        return bytes.fromhex(self.credentials.id_key) if self.credentials else secrets.token_bytes(32)

    def identify(self, authorization: bytes | str | None) -> tuple[str | None, int, str]:
        """(labeller, 0, "") for a known bearer token; else (None, 401 or 403, why)."""
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None, 401, "labels need a labeller's token: Authorization: Bearer <token> (`toolkit feedback-token`)"
        name = self.credentials.labeller_for(token) if self.credentials else None
        if name is None:
            return None, 403, "this token is no labeller's"
        return name, 0, ""


class LabelBook:
    """The first label of each prediction id, for the newest `capacity` ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._labels: OrderedDict[str, str] = OrderedDict()

    def sort(self, items: list[tuple[str, str]]) -> tuple[list[int], list[int], list[int]]:
        """Indices of the new labels, the repeats of a label already given, and the conflicts with one
        (a batch that gives one id two labels conflicts with itself)."""
        new, repeats, conflicts, seen = [], [], [], {}
        for i, (prediction_id, label) in enumerate(items):
            given = self._labels.get(prediction_id, seen.get(prediction_id))
            if given is None:
                seen[prediction_id] = label
                new.append(i)
            elif given == label:
                repeats.append(i)
            else:
                conflicts.append(i)
        return new, repeats, conflicts

    def remember(self, items: list[tuple[str, str]]) -> None:
        for prediction_id, label in items:
            self._labels[prediction_id] = label
            if len(self._labels) > self.capacity:
                self._labels.popitem(last=False)
