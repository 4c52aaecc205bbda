"""Errors the CLI turns into one clear paragraph and a meaningful exit code.

Exit codes (README "What you get today"): 0 ok, 1 failure, 2 bad input, 3 protected resources destroyed.
"""


class ToolkitError(Exception):
    """Base class: a failure the user can act on; never shown with a traceback."""

    exit_code = 1


class BadInputError(ToolkitError):
    """The user gave us something we cannot use (config, data, arguments)."""

    exit_code = 2


class ConfigError(BadInputError):
    """An environment file is missing, malformed or fails validation."""


class DataError(BadInputError):
    """A dataset cannot be turned into features and labels as asked."""


class ArtifactError(ToolkitError):
    """A model artifact is missing, incomplete or fails its checksums."""

    exit_code = 2


class RolloutError(ToolkitError):
    """A release did not come up (on Kubernetes or the local runtime); `reason` is what the pods,
    events or container say (CrashLoopBackOff, ErrImagePull, ReadinessProbeFailed, ...)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
