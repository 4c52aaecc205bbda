"""A training pod's result, carried in its container's termination message: `toolkit train` in a
Job writes a small JSON (the model version, where it was uploaded, the device that trained it) to
the file the Job names in TOOLKIT_RESULT_FILE (the kubelet's /dev/termination-log), and the API
server hands it back in the pod's status, with no log parsing and no store lookups."""

from __future__ import annotations

import json
import os

RESULT_FILE_ENV = "TOOLKIT_RESULT_FILE"
MAX_BYTES = 4096  # the kubelet keeps at most this much of a termination message


def write_job_result(result: dict) -> None:
    """Write `result` where the Job asked for it (nothing outside a Job)."""
    path = os.environ.get(RESULT_FILE_ENV)
    if not path:
        return
    text = json.dumps(result, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_BYTES:
        text = json.dumps({key: result[key] for key in ("version", "trained_on") if key in result}, separators=(",", ":"))
    with open(path, "w") as handle:
        handle.write(text)


def read_job_result(pods: list[dict]) -> dict:
    """The result a finished pod of the Job wrote ({} when none did, e.g. an older image)."""
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []):
            message = (status.get("state", {}).get("terminated") or {}).get("message")
            try:
                result = json.loads(message) if message else None
            except ValueError:
                continue
            if isinstance(result, dict):
                return result
    return {}
