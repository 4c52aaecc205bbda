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
    "max_body_bytes": "TOOLKIT_MAX_BODY_BYTES", "header_timeout": "TOOLKIT_HEADER_TIMEOUT", "workers": "TOOLKIT_WORKERS",
    "public_keys": PUBLIC_KEYS_ENV,
    # the feedback loop (serve/loop.py): prediction ids, the prediction log to the store, drift, ground truth
    "env": "TOOLKIT_ENV", "feedback": "TOOLKIT_FEEDBACK", "prediction_log_bucket": "TOOLKIT_PREDICTION_LOG_BUCKET",
    "region": "AWS_REGION",
}
_INTEGERS = {"port", "max_batch_size", "max_body_bytes", "header_timeout", "workers"}


@dataclass(frozen=True)
class LoopSettings:
    """What the server's feedback loop needs of the environment."""

    env: str
    config: FeedbackConfig
    bucket: str | None  # None: ids, ground truth and drift, but no log shipped


@dataclass(frozen=True)
class ServingSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_batch_size: int = 256
    max_body_bytes: int = 1_048_576
    header_timeout: int = 10
    workers: int = 1
    public_keys: str | None = None  # PEM bundle; None: the caller names the keys (toolkit serve --public-key/--env)
    env: str | None = None  # None: no feedback loop
    feedback: FeedbackConfig | None = None
    prediction_log_bucket: str | None = None
    region: str | None = None

    @classmethod
    def from_config(cls, config: EnvironmentConfig, public_keys: str | None = None, host: str = "0.0.0.0") -> ServingSettings:
        """An environment's serving settings (`host`: 0.0.0.0 in a pod; the local runtime binds loopback)."""
        serving = config.serving
        return cls(host=host, port=serving.port, max_batch_size=serving.max_batch_size, max_body_bytes=serving.max_body_bytes,
                   header_timeout=serving.header_timeout_seconds, workers=serving.worker_count, public_keys=public_keys,
                   env=config.name, feedback=config.feedback, prediction_log_bucket=config.artifact_store.bucket,
                   region=config.aws.region)

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
        return LoopSettings(self.env, self.feedback or FeedbackConfig(), self.prediction_log_bucket)
