"""The inference server's settings, in one place: read from an environment file, read from the
process environment (the serving image: a ConfigMap on Kubernetes, the container's environment on
the local Docker runtime) and written to a process environment. The manifests, the local runtime
and `toolkit serve` all go through `ServingSettings`, so a variable is spelled once, here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Mapping

from toolkit.config import EnvironmentConfig, FeedbackConfig

PUBLIC_KEYS_ENV = "TOOLKIT_MODEL_PUBLIC_KEYS"  # a PEM bundle: the keys the server verifies the model against

# field → variable; the values are strings in the environment, typed here.
_VARIABLES = {
    "host": "TOOLKIT_HOST", "port": "TOOLKIT_PORT", "max_batch_size": "TOOLKIT_MAX_BATCH_SIZE",
    "max_body_bytes": "TOOLKIT_MAX_BODY_BYTES", "header_timeout": "TOOLKIT_HEADER_TIMEOUT", "body_timeout": "TOOLKIT_BODY_TIMEOUT",
    "workers": "TOOLKIT_WORKERS", "feedback_port": "TOOLKIT_FEEDBACK_PORT", "public_keys": PUBLIC_KEYS_ENV,
    # the feedback loop (serve/loop.py): prediction ids, the prediction log to the store, drift, ground truth
    "env": "TOOLKIT_ENV", "feedback": "TOOLKIT_FEEDBACK", "prediction_log_bucket": "TOOLKIT_PREDICTION_LOG_BUCKET",
    "region": "AWS_REGION",
    # its credentials (feedback_auth.py): the document itself (a container of an emulated environment),
    # a file holding it, or the Secrets Manager secret the server reads at start (cloud)
    "feedback_secret": "TOOLKIT_FEEDBACK_SECRET", "feedback_secret_file": "TOOLKIT_FEEDBACK_SECRET_FILE",
    "feedback_secret_name": "TOOLKIT_FEEDBACK_SECRET_NAME",
}
_INTEGERS = {"port", "max_batch_size", "max_body_bytes", "header_timeout", "body_timeout", "workers", "feedback_port"}


@dataclass(frozen=True)
class LoopSettings:
    """What the server's feedback loop needs of the environment."""

    env: str
    config: FeedbackConfig
    bucket: str | None  # None: ids, ground truth and drift, but no log shipped
    secret: str | None = None  # the credentials document (feedback_auth.py) …
    secret_file: str | None = None  # … or a file holding it …
    secret_name: str | None = None  # … or the Secrets Manager secret holding it: then the server does not start without it
    region: str | None = None


@dataclass(frozen=True)
class ServingSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch_size: int = 256
    max_body_bytes: int = 1_048_576
    header_timeout: int = 10
    body_timeout: int = 30
    workers: int = 1
    feedback_port: int | None = None  # None: /v1/feedback on `port` with the rest
    public_keys: str | None = None  # PEM bundle; None: the caller names the keys (toolkit serve --public-key/--env)
    env: str | None = None  # None: no feedback loop
    feedback: FeedbackConfig | None = None
    prediction_log_bucket: str | None = None
    region: str | None = None
    feedback_secret: str | None = None
    feedback_secret_file: str | None = None
    feedback_secret_name: str | None = None

    @classmethod
    def from_config(cls, config: EnvironmentConfig, public_keys: str | None = None, host: str = "0.0.0.0",
                    feedback_secret: str | None = None) -> ServingSettings:
        """An environment's serving settings (`host`: 0.0.0.0 in a pod; the local runtime binds loopback).
        The feedback credentials: `feedback_secret` (an emulated environment's, from .local/), else, for
        a cloud environment, the Secrets Manager secret the server reads at start."""
        serving, emulated = config.serving, config.aws.endpoint_url is not None
        return cls(host=host, port=serving.port, max_batch_size=serving.max_batch_size, max_body_bytes=serving.max_body_bytes,
                   header_timeout=serving.header_timeout_seconds, body_timeout=serving.body_timeout_seconds,
                   workers=serving.worker_count, feedback_port=serving.feedback_port, public_keys=public_keys,
                   env=config.name, feedback=config.feedback, prediction_log_bucket=config.artifact_store.bucket,
                   region=config.aws.region, feedback_secret=feedback_secret,
                   feedback_secret_name=None if emulated or feedback_secret else config.feedback_secret_name)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """The settings the process environment sets; defaults for the rest. A malformed value is a ValueError naming it."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        for field, variable in _VARIABLES.items():
            raw = environ.get(variable)
            if not raw:
                continue
            try:
                if field in _INTEGERS:
                    values[field] = int(raw)
                elif field == "feedback":
                    values[field] = FeedbackConfig.model_validate(json.loads(raw))
                else:
                    values[field] = raw
            except ValueError as exc:
                raise ValueError(f"${variable}: {exc}") from None
        return cls(**values)

    def to_environ(self) -> dict[str, str]:
        """The variables that carry these settings (unset ones left out)."""
        out = {}
        for field, variable in _VARIABLES.items():
            value = getattr(self, field)
            if value is None:
                continue
            out[variable] = value.model_dump_json() if field == "feedback" else str(value)
        return out

    def replace(self, **changes) -> ServingSettings:
        """A copy with the changes that are not None (command-line flags left out stay as they were)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def loop(self) -> LoopSettings | None:
        """The feedback loop's settings; None when the settings name no environment."""
        if self.env is None:
            return None
        return LoopSettings(self.env, self.feedback or FeedbackConfig(), self.prediction_log_bucket, self.feedback_secret,
                            self.feedback_secret_file, self.feedback_secret_name, self.region)
